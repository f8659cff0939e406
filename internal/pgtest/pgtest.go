// Package pgtest runs a throwaway PostgreSQL server for tests, from the
// binaries of the Debian postgresql package: initdb into a temporary
// directory, a free loopback port, the postgres user when the caller is
// root. One server serves a whole test binary (started on first use,
// stopped by Main); each test gets a database of its own, cloned from a
// template that already carries the migrations.
//
// Without PostgreSQL installed a test skips with a message saying what to
// install, except under CI=true, where it fails: CI must never pass by
// skipping. `make test` installs the package when it can.
package pgtest

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
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mqchat/mqchat/internal/freeport"
	"github.com/mqchat/mqchat/internal/migrate"
)

const (
	templateDB   = "mqchat_template"
	startTimeout = 60 * time.Second
)

var (
	once   sync.Once
	shared *server
	errNo  error // why there is no server
	nextDB atomic.Int64
	// createMu serialises use of the admin connection; CREATE DATABASE
	// must be serialised anyway: PostgreSQL refuses to copy a template
	// another session is copying.
	createMu sync.Mutex
)

// Main runs the tests and then stops the server if one was started; call
// it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		if err := shared.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stop server:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// DSN returns a URL of a fresh, migrated database that is dropped when t
// ends. It skips t (fails it under CI=true) when PostgreSQL is missing.
func DSN(t testing.TB) string {
	t.Helper()
	once.Do(func() { shared, errNo = start() })
	if errNo != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pgtest: %v", errNo)
		}
		t.Skipf("pgtest: %v", errNo)
	}
	name := fmt.Sprintf("t%d", nextDB.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := shared.adminExec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+templateDB+" STRATEGY FILE_COPY")
	if err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE: a test that failed half-way may still hold connections.
		if err := shared.adminExec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database: %v", err)
		}
	})
	return shared.dsn(name)
}

type server struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan error // the postgres process's exit
	// admin is one connection for every CREATE and DROP DATABASE (under
	// createMu), rather than one connection each.
	admin *pgx.Conn
}

func (s *server) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// adminExec runs sql on the shared admin connection.
func (s *server) adminExec(ctx context.Context, sql string) error {
	createMu.Lock()
	defer createMu.Unlock()
	_, err := s.admin.Exec(ctx, sql)
	return err
}

func (s *server) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.dsn("postgres"))
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, sql)
	return errors.Join(err, conn.Close(ctx))
}

// binDir finds the newest installed server's binaries.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		return versionOf(a) - versionOf(b)
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server found (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH): " +
		"install it with `apt-get install postgresql` (make test does so when run as root)")
}

func versionOf(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

// runAs makes cmd run as the postgres user when we are root: initdb and
// postgres refuse to run as root.
func runAs(cmd *exec.Cmd, cred *syscall.Credential) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGTERM}
}

func credential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func start() (*server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s, err := startIn(bin, dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func startIn(bin, dir string) (*server, error) {
	cred, err := credential(dir)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	runAs(initdb, cred)
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	port, err := freeport.Loopback()
	if err != nil {
		return nil, err
	}
	// The server's own durability is not under test: fsync off keeps a
	// shared CI machine's disk out of the timings. The store still commits
	// synchronously, so the code paths are those of production.
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port),
		"-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
		"-c", "full_page_writes=off", "-c", "max_connections=300", "-c", "shared_buffers=32MB")
	runAs(cmd, cred)
	logBuf := &lockedWriter{}
	cmd.Stdout, cmd.Stderr = logBuf, logBuf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s := &server{dir: dir, port: port, cmd: cmd, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	if err := s.waitReady(); err != nil {
		_ = s.stop()
		return nil, fmt.Errorf("%w; server log:\n%s", err, logBuf.String())
	}
	if err := s.makeTemplate(); err != nil {
		_ = s.stop()
		return nil, err
	}
	return s, nil
}

// waitReady polls with real connections until the server accepts one.
func (s *server) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := s.exec(ctx, "SELECT 1")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case exitErr := <-s.done:
			s.done <- exitErr
			return fmt.Errorf("postgres exited during start-up: %v", exitErr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after %s: %w", startTimeout, err)
		}
	}
}

func (s *server) makeTemplate() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.exec(ctx, "CREATE DATABASE "+templateDB); err != nil {
		return fmt.Errorf("create template: %w", err)
	}
	r, err := migrate.Postgres(s.dsn(templateDB))
	if err != nil {
		return err
	}
	if err := errors.Join(r.Up(), r.Close()); err != nil {
		return err
	}
	s.admin, err = pgx.Connect(ctx, s.dsn("postgres"))
	return err
}

// stop asks for a fast shutdown and removes the directory.
func (s *server) stop() error {
	var err error
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.admin.Close(ctx) // the server is going away anyway
		cancel()
	}
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
			err = errors.New("postgres did not stop within 30s; killed")
		}
	}
	return errors.Join(err, os.RemoveAll(s.dir))
}

// lockedWriter collects the server's output for error messages.
type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
