// Package pgcluster owns an embedded Postgres cluster run from the machine's installed
// Postgres binaries: it creates the data directory, starts, reuses and stops the server.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Sentinel errors.
var (
	// ErrBinariesNotFound means no Postgres server binaries were found; the message says
	// which packages to install.
	ErrBinariesNotFound = errors.New("postgres server binaries not found: install the Debian packages postgresql-15 postgresql-contrib-15 (scripts/ensure-deps.sh does it), or set VELOCITY_PG_BIN to a directory holding postgres, initdb and pg_ctl")
)

// Options describe the cluster to start.
type Options struct {
	DataDir    string            // PGDATA; created with initdb if it has no PG_VERSION; kept between runs
	SocketDir  string            // unix socket directory (must be short); created if missing
	Port       int               // TCP port; 0 = no TCP listener (the socket file then uses 5432)
	ListenAddr string            // when Port>0, default "127.0.0.1"
	Fsync      bool              // false => fsync, synchronous_commit and full_page_writes off (tests)
	Superuser  string            // bootstrap superuser name, default "postgres"
	ExtraConf  map[string]string // extra server settings (e.g. max_connections); they win over the defaults
	Log        io.Writer         // server output; nil = postgres.log beside DataDir
}

// Cluster is a running Postgres server.
type Cluster struct {
	binDir    string
	dataDir   string
	socketDir string
	port      int
	superuser string
	user      *serverUser

	logTail  func() string // this run's last server output, for error messages
	logDone  chan struct{} // closed once the server output pipe is drained; nil for a log file
	closeLog func()        // closes this process's copy of the server output file
}

const (
	defaultBinDir   = "/usr/lib/postgresql/15/bin"
	socketPortNoTCP = 5432
	// sun_path is 108 bytes on Linux, including the terminating NUL.
	maxSocketPath = 107
	startTimeout  = 60 * time.Second
	connectWait   = 10 * time.Second
	logTailBytes  = 4096
)

// FindBinDir returns the directory holding postgres, initdb and pg_ctl: $VELOCITY_PG_BIN,
// else Debian's Postgres 15 directory, else what `pg_config --bindir` says.
func FindBinDir() (string, error) {
	if dir := os.Getenv("VELOCITY_PG_BIN"); dir != "" {
		if err := checkBinDir(dir); err != nil {
			return "", fmt.Errorf("VELOCITY_PG_BIN: %w", err)
		}
		return dir, nil
	}
	if checkBinDir(defaultBinDir) == nil {
		return defaultBinDir, nil
	}
	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		if out, err := exec.Command(pgConfig, "--bindir").Output(); err == nil {
			dir := strings.TrimSpace(string(out))
			if checkBinDir(dir) == nil {
				return dir, nil
			}
		}
	}
	return "", ErrBinariesNotFound
}

func checkBinDir(dir string) error {
	for _, name := range []string{"postgres", "initdb", "pg_ctl"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s is not an executable file", filepath.Join(dir, name))
		}
	}
	return nil
}

// Start starts the cluster in opts.DataDir, creating it first if needed, and returns once
// the superuser can connect. A server already running on that data directory is reused.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c, settings, err := newCluster(opts)
	if err != nil {
		return nil, err
	}
	if pid, ok := c.runningPID(); ok {
		if err := c.adoptRunning(pid); err != nil {
			return nil, err
		}
		if err := c.waitReady(ctx); err != nil {
			return nil, fmt.Errorf("reuse postgres (pid %d) on %s: %w", pid, c.dataDir, err)
		}
		return c, nil
	}

	if err := c.user.prepareDir(c.socketDir, 0o700); err != nil {
		return nil, fmt.Errorf("prepare socket dir: %w", err)
	}
	// The cluster trusts its unix socket, so only the server user (and root) may reach it:
	// another local user must not log in as the superuser or the authenticator. A directory
	// the server user does not own (a shared /tmp) is left alone.
	if err := c.user.restrict(c.socketDir); err != nil {
		return nil, fmt.Errorf("prepare socket dir: %w", err)
	}
	if err := c.prepareDataDir(ctx, opts.Fsync); err != nil {
		return nil, err
	}
	out, err := c.openLog(opts.Log)
	if err != nil {
		return nil, err
	}
	if err := c.pgctlStart(ctx, out, settings); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		err = fmt.Errorf("connect to postgres on %s: %w%s", c.dataDir, err, c.tailForError())
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// newCluster validates opts, fills in defaults and returns the server settings to pass.
func newCluster(opts Options) (*Cluster, map[string]string, error) {
	if opts.DataDir == "" || opts.SocketDir == "" {
		return nil, nil, errors.New("start postgres: DataDir and SocketDir are required")
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, nil, fmt.Errorf("start postgres: port %d out of range", opts.Port)
	}
	binDir, err := FindBinDir()
	if err != nil {
		return nil, nil, err
	}
	user, err := lookupServerUser()
	if err != nil {
		return nil, nil, err
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, nil, fmt.Errorf("start postgres: %w", err)
	}
	socketDir, err := filepath.Abs(opts.SocketDir)
	if err != nil {
		return nil, nil, fmt.Errorf("start postgres: %w", err)
	}
	c := &Cluster{
		binDir:    binDir,
		dataDir:   dataDir,
		socketDir: socketDir,
		port:      opts.Port,
		superuser: opts.Superuser,
		user:      user,
		logTail:   func() string { return "" },
		closeLog:  func() {},
	}
	if c.port == 0 {
		c.port = socketPortNoTCP
	}
	if c.superuser == "" {
		c.superuser = "postgres"
	}
	if sock := c.socketFile(); len(sock) > maxSocketPath {
		return nil, nil, fmt.Errorf("start postgres: socket path %s is %d bytes, the limit is %d: choose a shorter SocketDir", sock, len(sock), maxSocketPath)
	}

	listen := ""
	if opts.Port > 0 {
		listen = opts.ListenAddr
		if listen == "" {
			listen = "127.0.0.1"
		}
	}
	settings := map[string]string{
		"listen_addresses":        listen,
		"port":                    strconv.Itoa(c.port),
		"unix_socket_directories": `"` + strings.ReplaceAll(socketDir, `"`, `""`) + `"`,
		"max_connections":         "200",
		"shared_buffers":          "128MB",
	}
	if !opts.Fsync {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range opts.ExtraConf {
		if !settingName.MatchString(k) {
			return nil, nil, fmt.Errorf("start postgres: ExtraConf: invalid setting name %q", k)
		}
		if strings.ContainsAny(v, "\n\r\x00") {
			return nil, nil, fmt.Errorf("start postgres: ExtraConf[%s]: value has a line break", k)
		}
		settings[k] = v
	}
	return c, settings, nil
}

var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

func (c *Cluster) socketFile() string {
	return filepath.Join(c.socketDir, ".s.PGSQL."+strconv.Itoa(c.port))
}

// prepareDataDir makes sure the data directory exists, belongs to the server user and holds a
// cluster, running initdb when it has no PG_VERSION.
func (c *Cluster) prepareDataDir(ctx context.Context, fsync bool) error {
	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); err == nil {
		if err := c.user.ensureSearchable(filepath.Dir(c.dataDir)); err != nil {
			return fmt.Errorf("prepare data dir: %w", err)
		}
		fi, err := os.Stat(c.dataDir)
		if err != nil {
			return fmt.Errorf("prepare data dir: %w", err)
		}
		if !c.user.owns(fi) {
			return fmt.Errorf("prepare data dir: %s is not owned by user %s, which runs postgres; chown -R it or use another DataDir", c.dataDir, c.user.name)
		}
		return nil
	}
	if err := c.user.prepareDir(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("prepare data dir: %w", err)
	}
	// initdb sets the data directory's mode, which only its owner may do.
	if fi, err := os.Stat(c.dataDir); err == nil && !c.user.owns(fi) && c.user.cred != nil {
		if err := os.Chown(c.dataDir, int(c.user.uid), int(c.user.gid)); err != nil {
			return fmt.Errorf("prepare data dir: hand %s to user %s: %w", c.dataDir, c.user.name, err)
		}
	}
	return c.initdb(ctx, fsync)
}

func (c *Cluster) initdb(ctx context.Context, fsync bool) error {
	run := func(locale string) ([]byte, error) {
		args := []string{
			"-D", c.dataDir, "-U", c.superuser,
			"--auth-local=trust", "--auth-host=scram-sha-256",
			"-E", "UTF8", "--locale=" + locale,
		}
		if !fsync {
			args = append(args, "--no-sync")
		}
		cmd := c.user.command(ctx, filepath.Join(c.binDir, "initdb"), args...)
		return cmd.CombinedOutput()
	}
	out, err := run("C.UTF-8")
	if err != nil && strings.Contains(strings.ToLower(string(out)), "locale") {
		// C.UTF-8 is built into glibc only since 2.35; older systems may lack it.
		out, err = run("C")
	}
	if err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", c.dataDir, err, tail(out, logTailBytes))
	}
	return nil
}

// openLog returns the file the server writes its output to: the log file beside the data
// directory, or the write end of a pipe drained into w. The server inherits it, so the file
// is opened here rather than by the server user, who may not be able to write beside DataDir.
func (c *Cluster) openLog(w io.Writer) (*os.File, error) {
	if w == nil {
		path := filepath.Join(filepath.Dir(c.dataDir), "postgres.log")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, fmt.Errorf("open postgres log: %w", err)
		}
		start, _ := f.Seek(0, io.SeekEnd)
		c.logTail = func() string { return readTail(path, start) }
		c.closeLog = func() { _ = f.Close() }
		return f, nil
	}
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("open postgres log pipe: %w", err)
	}
	ring := &tailBuffer{max: logTailBytes}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer r.Close()
		buf := make([]byte, 32*1024)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				ring.Write(buf[:n])
				// A failing writer must not stop the draining, or the server would block
				// on a full pipe.
				_, _ = w.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	c.logTail = ring.String
	c.logDone = done
	// Once pg_ctl has started the server, the server holds its own copy of the write end.
	c.closeLog = func() { _ = pw.Close() }
	return pw, nil
}

func (c *Cluster) pgctlStart(ctx context.Context, out *os.File, settings map[string]string) error {
	var o strings.Builder
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		if o.Len() > 0 {
			o.WriteByte(' ')
		}
		// pg_ctl pastes -o into a /bin/sh command line.
		o.WriteString("-c " + shellQuote(k+"="+settings[k]))
	}
	cmd := c.user.command(ctx, filepath.Join(c.binDir, "pg_ctl"),
		"start", "-w", "-s", "-t", strconv.Itoa(int(startTimeout/time.Second)),
		"-D", c.dataDir, "-o", o.String())
	// The server inherits these: its output goes to the log, and pg_ctl's errors with it.
	cmd.Stdout = out
	cmd.Stderr = out
	err := cmd.Run()
	c.closeLog()
	if err != nil {
		c.waitLogDrained(time.Second)
		return fmt.Errorf("pg_ctl start %s: %w%s", c.dataDir, err, c.tailForError())
	}
	return nil
}

// waitLogDrained waits until the server output pipe reaches EOF (the server has exited), so
// that Log has everything and an error message can include the server's last words.
func (c *Cluster) waitLogDrained(d time.Duration) {
	if c.logDone == nil {
		return
	}
	select {
	case <-c.logDone:
	case <-time.After(d):
	}
}

// waitReady connects as the superuser until it works or connectWait passes.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, connectWait)
	defer cancel()
	var last error
	for {
		conn, err := pgx.Connect(ctx, c.SuperuserDSN("postgres"))
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(context.Background())
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return last
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// runningPID reports the postmaster recorded in postmaster.pid if that process is alive and
// is a postgres. A stale file is left for pg_ctl and postgres to deal with.
func (c *Cluster) runningPID() (int, bool) {
	lines, err := c.pidFile()
	if err != nil || len(lines) == 0 {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0, false
	}
	// After a reboot or in a new container the pid may belong to something else, and a
	// postmaster that exited but is not yet reaped still answers kill 0.
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if open < 0 || end < open {
			return 0, false
		}
		name, state := string(stat[open+1:end]), strings.Fields(string(stat[end+1:]))
		if (name != "postgres" && name != "postmaster") || len(state) == 0 || state[0] == "Z" {
			return 0, false
		}
	}
	return pid, true
}

func (c *Cluster) pidFile() ([]string, error) {
	b, err := os.ReadFile(filepath.Join(c.dataDir, "postmaster.pid"))
	if err != nil {
		return nil, err
	}
	return strings.Split(string(b), "\n"), nil
}

// adoptRunning checks that the running server listens where the options say, so the DSNs
// this Cluster hands out reach it.
func (c *Cluster) adoptRunning(pid int) error {
	lines, err := c.pidFile()
	if err != nil {
		return fmt.Errorf("reuse postgres on %s: %w", c.dataDir, err)
	}
	// postmaster.pid: pid, data dir, start time, port, first socket dir, listen addr, …
	if len(lines) < 5 {
		return fmt.Errorf("reuse postgres on %s: postmaster.pid is incomplete (server still starting?)", c.dataDir)
	}
	port, _ := strconv.Atoi(strings.TrimSpace(lines[3]))
	sock := strings.TrimSpace(lines[4])
	if port != c.port || filepath.Clean(sock) != c.socketDir {
		return fmt.Errorf("reuse postgres on %s: it is already running (pid %d) with port %d and socket dir %q, not port %d and %q; stop it with: pg_ctl stop -D %s",
			c.dataDir, pid, port, sock, c.port, c.socketDir, c.dataDir)
	}
	return nil
}

// SuperuserDSN returns a libpq keyword/value DSN for the bootstrap superuser over the unix
// socket.
func (c *Cluster) SuperuserDSN(db string) string {
	return c.DSN(c.superuser, db)
}

// DSN returns a libpq keyword/value DSN for user over the unix socket.
func (c *Cluster) DSN(user, db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable",
		dsnValue(c.socketDir), c.port, dsnValue(user), dsnValue(db))
}

// SocketDir returns the directory holding the server's unix socket.
func (c *Cluster) SocketDir() string { return c.socketDir }

// Stop shuts the server down with a fast shutdown (open transactions roll back) and waits
// for it to exit. Stopping a server that is not running is not an error.
func (c *Cluster) Stop() error {
	defer c.waitLogDrained(5 * time.Second)
	if _, ok := c.runningPID(); !ok {
		return nil
	}
	cmd := c.user.command(context.Background(), filepath.Join(c.binDir, "pg_ctl"),
		"stop", "-w", "-s", "-m", "fast", "-t", strconv.Itoa(int(startTimeout/time.Second)), "-D", c.dataDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		if _, ok := c.runningPID(); !ok {
			return nil
		}
		return fmt.Errorf("pg_ctl stop %s: %w: %s%s", c.dataDir, err, strings.TrimSpace(string(out)), c.tailForError())
	}
	return nil
}

func (c *Cluster) tailForError() string {
	if t := strings.TrimSpace(c.logTail()); t != "" {
		return "\nserver log (tail):\n" + t
	}
	return ""
}

// dsnValue quotes a libpq keyword/value when it needs it.
func dsnValue(s string) string {
	if s != "" && !strings.ContainsAny(s, " '\\\t\n") {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// readTail returns up to logTailBytes of path written after offset from.
func readTail(path string, from int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	from = max(from, fi.Size()-logTailBytes)
	b := make([]byte, max(0, fi.Size()-from))
	n, _ := f.ReadAt(b, from)
	return string(b[:n])
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
