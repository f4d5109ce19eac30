// Package redistest gives tests a real Redis: a throwaway redis-server per call to Start, on a
// free port of 127.0.0.1, with nothing persisted, that a test can kill and restart.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process owned by a test.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{} // closed when cmd has exited
	logs int           // how many servers this Server has started, to name their log files
}

// readyTimeout bounds how long a started server may take to answer PING.
const readyTimeout = 10 * time.Second

// Start starts a redis-server for t and stops it when t ends. It fails t, rather than skipping
// it, when redis-server is not installed: the tests that need it are part of `make test`,
// whose setup (scripts/ensure-deps.sh) installs it.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := findBinary()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.stop)
	// A port picked by listening on :0 can be taken by someone else before redis binds it;
	// try a few.
	for attempt := 0; ; attempt++ {
		s.port, err = freePort()
		if err == nil {
			err = s.start()
		}
		if err == nil {
			return s
		}
		if attempt == 4 {
			t.Fatalf("redistest: %v", err)
		}
	}
}

// findBinary looks redis-server up in PATH, then where Debian's redis-server package puts it.
func findBinary() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	const debian = "/usr/bin/redis-server"
	if _, err := os.Stat(debian); err == nil {
		return debian, nil
	}
	return "", errors.New("redis-server not found in PATH or /usr/bin: install the Debian package " +
		"redis-server (sudo apt-get install -y redis-server, or run scripts/ensure-deps.sh as root)")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Client returns a client of the server, closed when t ends. It honours context deadlines
// (ContextTimeoutEnabled), as the API's client should, and gives up at once on a dead server.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                  s.Addr(),
		ContextTimeoutEnabled: true,
		DialTimeout:           time.Second,
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		MaxRetries:            1,
		DialerRetries:         1,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it to exit.
func (s *Server) Kill() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kill()
}

// Restart kills the server if it still runs and starts a new, empty one on the same address.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	s.kill()
	s.mu.Unlock()
	// The port was just released by the killed server; retry briefly in case the kernel has
	// not let go of it yet.
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart on %s: %v", s.Addr(), err)
}

func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kill()
}

// kill needs s.mu.
func (s *Server) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exit
	s.cmd = nil
}

// start runs redis-server on s.port and waits until it answers PING.
func (s *Server) start() error {
	s.mu.Lock()
	s.logs++
	logPath := filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", s.logs))
	s.mu.Unlock()
	cmd := exec.Command(s.bin,
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(s.port),
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--protected-mode", "no",
		"--logfile", logPath,
	)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exit := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exit)
	}()
	deadline := time.Now().Add(readyTimeout)
	for {
		if answers(s.Addr(), cmd.Process.Pid) {
			s.mu.Lock()
			s.cmd, s.exit = cmd, exit
			s.mu.Unlock()
			return nil
		}
		select {
		case <-exit:
			return fmt.Errorf("redis-server on port %d exited at start: %s", s.port, tail(logPath))
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exit
			return fmt.Errorf("redis-server on port %d did not answer PING within %s: %s", s.port, readyTimeout, tail(logPath))
		}
	}
}

// answers reports whether the redis-server with process id pid answers at addr. Checking the
// pid, not just PING, keeps a test from taking another test's server that won a port race.
func answers(addr string, pid int) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("INFO server\r\n")); err != nil {
		return false
	}
	rd := bufio.NewReader(c)
	header, err := rd.ReadString('\n')
	if err != nil || !strings.HasPrefix(header, "$") {
		return false // -LOADING and the like: not ready yet
	}
	n, err := strconv.Atoi(strings.TrimSpace(header[1:]))
	if err != nil || n <= 0 {
		return false
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(rd, body); err != nil {
		return false
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return v == strconv.Itoa(pid)
		}
	}
	return false
}

// tail returns the end of a server's log, for an error message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}
