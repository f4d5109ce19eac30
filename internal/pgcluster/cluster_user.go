package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// serverUser is the account initdb, pg_ctl and postgres run as. Postgres refuses to run as
// root, so a root process hands the server to the Debian "postgres" system user; any other
// process runs the server as itself.
type serverUser struct {
	name string
	uid  uint32
	gid  uint32
	gids []uint32            // primary and supplementary groups, for permission checks
	cred *syscall.Credential // nil: run as the current process
}

// systemUserName is the account the postgresql-common package creates on Debian.
const systemUserName = "postgres"

func lookupServerUser() (*serverUser, error) {
	if os.Geteuid() != 0 {
		gids := []uint32{uint32(os.Getegid())}
		if groups, err := os.Getgroups(); err == nil {
			for _, g := range groups {
				gids = append(gids, uint32(g))
			}
		}
		name := strconv.Itoa(os.Geteuid())
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
		return &serverUser{name: name, uid: uint32(os.Geteuid()), gid: uint32(os.Getegid()), gids: gids}, nil
	}
	u, err := user.Lookup(systemUserName)
	if err != nil {
		return nil, fmt.Errorf("running as root: postgres must run as the %q system user, which was not found (%v); install it with: apt-get install postgresql-15", systemUserName, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse uid of user %q: %w", systemUserName, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse gid of user %q: %w", systemUserName, err)
	}
	gids := []uint32{uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, s := range ids {
			if g, err := strconv.ParseUint(s, 10, 32); err == nil && !slices.Contains(gids, uint32(g)) {
				gids = append(gids, uint32(g))
			}
		}
	}
	return &serverUser{
		name: u.Username,
		uid:  uint32(uid),
		gid:  uint32(gid),
		gids: gids,
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: gids},
	}, nil
}

// command builds a command that runs as the server user, with a working directory and an
// environment that user can use: libpq variables of the caller (PGPORT, PGDATA …) are dropped
// so that only the options given here decide where the server listens.
func (u *serverUser) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = "/"
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = env
	if u.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred}
	}
	return cmd
}

// prepareDir creates dir (and missing parents, 0755) and makes sure the server user can use
// it: every ancestor must be searchable by that user and dir itself writable. When the
// process is root it fixes what it finds: ancestors get the one search bit the server user
// needs (never read or write), and dir is handed to the server user if it cannot write there.
func (u *serverUser) prepareDir(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := u.ensureSearchable(filepath.Dir(dir)); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if u.allows(fi, 0o3) { // write and search
		return nil
	}
	if u.cred == nil {
		return fmt.Errorf("%s is not writable by user %s", dir, u.name)
	}
	if err := os.Chown(dir, int(u.uid), int(u.gid)); err != nil {
		return fmt.Errorf("hand %s to user %s: %w", dir, u.name, err)
	}
	return nil
}

// ensureSearchable walks from dir up to / and, when root, adds the search bit the server user
// is missing. A root-made temp dir (os.MkdirTemp, t.TempDir) is 0700 and would otherwise stop
// the postgres user from reaching the data directory inside it.
func (u *serverUser) ensureSearchable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if !u.allows(fi, 0o1) {
			if u.cred == nil {
				return fmt.Errorf("%s is not searchable by user %s", d, u.name)
			}
			if err := os.Chmod(d, fi.Mode().Perm()|u.classBits(fi, 0o1)); err != nil {
				return fmt.Errorf("let user %s reach %s: %w", u.name, d, err)
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// allows reports whether the server user has all of the rwx bits in want (0o1 search,
// 0o2 write, 0o4 read) on fi, following POSIX's owner, then group, then other order.
func (u *serverUser) allows(fi os.FileInfo, want os.FileMode) bool {
	if u.uid == 0 {
		return true
	}
	return fi.Mode().Perm()&u.classBits(fi, want) == u.classBits(fi, want)
}

// classBits shifts want into the owner, group or other class that applies to the server user.
func (u *serverUser) classBits(fi os.FileInfo, want os.FileMode) os.FileMode {
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !ok:
		return want
	case st.Uid == u.uid:
		return want << 6
	case slices.Contains(u.gids, st.Gid):
		return want << 3
	default:
		return want
	}
}

// owns reports whether fi belongs to the server user; postgres refuses a data directory
// it does not own.
func (u *serverUser) owns(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return !ok || st.Uid == u.uid
}

// restrict makes dir 0700 when the server user owns it.
func (u *serverUser) restrict(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid != u.uid || fi.Mode().Perm() == 0o700 {
		return nil
	}
	return os.Chmod(dir, 0o700)
}
