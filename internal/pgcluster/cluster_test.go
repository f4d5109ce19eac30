package pgcluster

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func testOptions(t *testing.T) Options {
	t.Helper()
	base := t.TempDir()
	return Options{
		DataDir:   filepath.Join(base, "data"),
		SocketDir: filepath.Join(base, "sock"),
		ExtraConf: map[string]string{"max_connections": "20"},
	}
}

func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	c, err := Start(t.Context(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Stop()) })
	return c
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func show(t *testing.T, conn *pgx.Conn, setting string) string {
	t.Helper()
	var v string
	require.NoError(t, conn.QueryRow(t.Context(), "show "+setting).Scan(&v))
	return v
}

func TestStart(t *testing.T) {
	t.Parallel()
	opts := testOptions(t)
	c := startCluster(t, opts)

	conn := connect(t, c.SuperuserDSN("postgres"))
	var version string
	require.NoError(t, conn.QueryRow(t.Context(), "select version()").Scan(&version))
	require.Contains(t, version, "PostgreSQL 15")
	require.Equal(t, "off", show(t, conn, "fsync"))
	require.Equal(t, "off", show(t, conn, "synchronous_commit"))
	require.Equal(t, "", show(t, conn, "listen_addresses"))
	require.Equal(t, "20", show(t, conn, "max_connections"))
	require.Equal(t, "UTF8", show(t, conn, "server_encoding"))

	require.Equal(t, filepath.Clean(opts.SocketDir), c.SocketDir())
	require.FileExists(t, filepath.Join(c.SocketDir(), ".s.PGSQL.5432"))
	// The socket is trusted, so only the server user (and root) may reach it.
	sfi, err := os.Stat(c.SocketDir())
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), sfi.Mode().Perm())
	fi, err := os.Stat(opts.DataDir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	log, err := os.ReadFile(filepath.Join(filepath.Dir(opts.DataDir), "postgres.log"))
	require.NoError(t, err)
	require.Contains(t, string(log), "ready to accept connections")

	require.NoError(t, conn.Close(t.Context()))
	require.NoError(t, c.Stop())
	require.NoFileExists(t, filepath.Join(opts.DataDir, "postmaster.pid"))
	require.NoError(t, c.Stop(), "stopping a stopped cluster")
}

func TestStartKeepsDataDir(t *testing.T) {
	t.Parallel()
	opts := testOptions(t)
	opts.Fsync = true

	c, err := Start(t.Context(), opts)
	require.NoError(t, err)
	conn := connect(t, c.SuperuserDSN("postgres"))
	require.Equal(t, "on", show(t, conn, "fsync"))
	_, err = conn.Exec(t.Context(), "create table kept (id int); insert into kept values (42)")
	require.NoError(t, err)
	require.NoError(t, conn.Close(t.Context()))
	require.NoError(t, c.Stop())

	// A crash leaves postmaster.pid behind; pg_ctl and postgres must get past it.
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	pidFile := filepath.Join(opts.DataDir, "postmaster.pid")
	require.NoError(t, os.WriteFile(pidFile, []byte(strconv.Itoa(dead.Process.Pid)+"\n"+opts.DataDir+"\n"), 0o600))
	fi, err := os.Stat(opts.DataDir)
	require.NoError(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	require.NoError(t, os.Chown(pidFile, int(st.Uid), int(st.Gid)))

	c = startCluster(t, opts)
	conn = connect(t, c.SuperuserDSN("postgres"))
	var id int
	require.NoError(t, conn.QueryRow(t.Context(), "select id from kept").Scan(&id))
	require.Equal(t, 42, id)
}

func TestStartReusesRunningServer(t *testing.T) {
	t.Parallel()
	opts := testOptions(t)
	first := startCluster(t, opts)
	conn := connect(t, first.SuperuserDSN("postgres"))
	var pid int
	require.NoError(t, conn.QueryRow(t.Context(), "select pg_backend_pid()").Scan(&pid))

	second := startCluster(t, opts)
	require.Equal(t, first.SuperuserDSN("postgres"), second.SuperuserDSN("postgres"))
	conn2 := connect(t, second.SuperuserDSN("postgres"))
	var others int
	require.NoError(t, conn2.QueryRow(t.Context(),
		"select count(*) from pg_stat_activity where pid = $1", pid).Scan(&others))
	require.Equal(t, 1, others, "second Start should reach the first server")

	other := opts
	other.SocketDir = filepath.Join(t.TempDir(), "sock")
	_, err := Start(t.Context(), other)
	require.ErrorContains(t, err, "already running")
}

func TestStartTCP(t *testing.T) {
	t.Parallel()
	opts := testOptions(t)
	opts.Port = freePort(t)
	c := startCluster(t, opts)

	conn := connect(t, c.SuperuserDSN("postgres"))
	require.Equal(t, "127.0.0.1", show(t, conn, "listen_addresses"))
	require.Equal(t, strconv.Itoa(opts.Port), show(t, conn, "port"))
	tcp, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.Port)))
	require.NoError(t, err)
	require.NoError(t, tcp.Close())
}

func TestStartLogWriter(t *testing.T) {
	t.Parallel()
	opts := testOptions(t)
	var log syncBuffer
	opts.Log = &log
	c, err := Start(t.Context(), opts)
	require.NoError(t, err)
	require.NoError(t, c.Stop())
	require.Contains(t, log.String(), "ready to accept connections")
	require.Contains(t, log.String(), "database system is shut down")
}

func TestStartBadSettingShowsLog(t *testing.T) {
	t.Parallel()
	opts := testOptions(t)
	opts.ExtraConf = map[string]string{"shared_buffers": "lots"}
	_, err := Start(t.Context(), opts)
	require.ErrorContains(t, err, "pg_ctl start")
	require.ErrorContains(t, err, `invalid value for parameter "shared_buffers"`)

	opts.ExtraConf = map[string]string{"bad name": "1"}
	_, err = Start(t.Context(), opts)
	require.ErrorContains(t, err, "invalid setting name")
}

func TestDSN(t *testing.T) {
	t.Parallel()
	c := &Cluster{socketDir: "/tmp/my sock", port: 5432, superuser: "postgres"}
	require.Equal(t, `host='/tmp/my sock' port=5432 user=postgres dbname=app sslmode=disable`, c.SuperuserDSN("app"))
	require.Equal(t, `host='/tmp/my sock' port=5432 user='o\'brien' dbname='' sslmode=disable`, c.DSN("o'brien", ""))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
