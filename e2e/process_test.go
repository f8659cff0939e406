package e2e

// Helpers that run the real chatd binary as a subprocess, for what an
// in-process app cannot show: SIGKILL, signals and exit codes, the operator
// CLI talking to a running server, startup failing on bad configuration.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/app"
	"github.com/mqchat/mqchat/internal/freeport"
)

const (
	readyTimeout = 20 * time.Second // from exec to GET /readyz answering 200
	stopTimeout  = 20 * time.Second // from SIGTERM/SIGKILL to exit
	cliTimeout   = 30 * time.Second // one `chatd user ...` run
	// procLifetime bounds one chatd process: a watchdog SIGKILLs it after
	// that, so a wedged server fails the test instead of hanging it.
	procLifetime = 90 * time.Second
)

var build struct {
	once sync.Once
	bin  string
	err  error
}

// chatdBinary builds ./cmd/chatd once per test binary run and returns its
// path. It lives in a per-process directory under the system temp dir
// (there is no TestMain hook here to delete it at exit); directories left
// by earlier runs whose process is gone are removed first.
func chatdBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			build.err = err
			return
		}
		sweepStaleBinaries()
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("mqchat-e2e-%d", os.Getpid()))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			build.err = err
			return
		}
		bin := filepath.Join(dir, "chatd")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/chatd")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/chatd: %v\n%s", err, out)
			return
		}
		build.bin = bin
	})
	if build.err != nil {
		t.Fatalf("building chatd: %v", build.err)
	}
	return build.bin
}

// moduleRoot walks up from the working directory to the go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func sweepStaleBinaries() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "mqchat-e2e-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), "mqchat-e2e-"))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

// freePort returns a loopback address that was free a moment ago.
// startChatd retries when another process takes it in between. The probe
// binds without SO_REUSEADDR (see freeport.Listen).
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := freeport.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatalf("free port: %v", err)
	}
	return addr
}

// childEnv is the test's environment without MQCHAT_* variables, which chatd
// would read as configuration (and refuse when unknown), plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MQCHAT_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// syncBuffer is a bytes.Buffer safe to read while exec copies into it.
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

// chatdProc is one running `chatd serve`.
type chatdProc struct {
	name     string // for messages: "chatd", "chatd (restarted)"...
	dataDir  string
	mqttAddr string
	httpAddr string
	base     string // http://host:port

	cmd      *exec.Cmd
	stderr   *syncBuffer
	exited   chan struct{} // closed once Wait returned
	waitErr  error         // valid after exited
	watchdog *time.Timer
	timedOut atomic.Bool // the watchdog killed it
}

// startChatd runs `chatd serve` on dataDir with fresh loopback ports and
// waits until it is ready. The process is killed at the end of the test if
// still running, and its stderr is logged when the test failed.
func startChatd(t *testing.T, name, dataDir string) *chatdProc {
	t.Helper()
	return startChatdWith(t, name, dataDir, procOpts{})
}

// procOpts is what a caller adds to the usual test process: flags after
// the test ones, and fixed ports for a restart that must keep its
// addresses (empty: fresh ones).
type procOpts struct {
	args               []string
	mqttAddr, httpAddr string
	lifetime           time.Duration // the watchdog's; 0 is procLifetime
}

// startChatdWith is startChatd with opts.
func startChatdWith(t *testing.T, name, dataDir string, opts procOpts) *chatdProc {
	t.Helper()
	bin := chatdBinary(t)
	const attempts = 3
	for i := 1; ; i++ {
		p := launchChatd(t, bin, name, dataDir, opts)
		err := p.waitReady(readyTimeout)
		if err == nil {
			return p
		}
		p.kill(t)
		// Ports are picked then released, so another process can win one;
		// fixed ports are the caller's to keep.
		if i < attempts && opts.mqttAddr == "" && strings.Contains(p.stderr.String(), "already in use") {
			t.Logf("%s: port taken, retrying: %v", name, err)
			continue
		}
		t.Fatalf("%s did not become ready: %v\nstderr:\n%s", name, err, p.stderr)
	}
}

func launchChatd(t *testing.T, bin, name, dataDir string, opts procOpts) *chatdProc {
	t.Helper()
	p := &chatdProc{
		name: name, dataDir: dataDir, mqttAddr: opts.mqttAddr, httpAddr: opts.httpAddr,
		stderr: &syncBuffer{}, exited: make(chan struct{}),
	}
	if p.mqttAddr == "" {
		p.mqttAddr = freePort(t)
	}
	if p.httpAddr == "" {
		p.httpAddr = freePort(t)
	}
	p.base = "http://" + p.httpAddr
	args := []string{"serve",
		"--data_dir", dataDir,
		"--mqtt.addr", p.mqttAddr,
		"--mqtt.ws_addr=",
		"--http.addr", p.httpAddr,
		"--auth.bcrypt_cost", "4",
		"--limits.send_rate", "0", // the crash test sends as fast as it can
		"--limits.auth_rate", "0",
		"--log.level", "warn",
	}
	p.cmd = exec.Command(bin, append(args, opts.args...)...)
	p.cmd.Env = childEnv(backendEnv(t)...)
	p.cmd.Stdout = p.stderr // serve prints nothing on stdout; keep both together
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	lifetime := opts.lifetime
	if lifetime == 0 {
		lifetime = procLifetime
	}
	p.watchdog = time.AfterFunc(lifetime, func() {
		p.timedOut.Store(true)
		_ = p.cmd.Process.Kill()
	})
	t.Cleanup(func() {
		p.watchdog.Stop()
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if p.timedOut.Load() {
			t.Errorf("%s was still running after %v and was killed", name, lifetime)
		}
		if t.Failed() {
			t.Logf("%s (data dir %s) stderr:\n%s", name, dataDir, p.stderr)
		}
	})
	return p
}

// waitReady polls GET /readyz until it answers 200, the process exits or
// the timeout passes.
func (p *chatdProc) waitReady(timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := errors.New("no answer yet")
	for {
		resp, err := client.Get(p.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("GET /readyz: status %d", resp.StatusCode)
		} else {
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, last)
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited before ready (%v); last probe: %w", p.waitErr, last)
		case <-tick.C:
		}
	}
}

// server returns the harness's REST helper pointed at this process.
func (p *chatdProc) server() *server {
	return &server{base: p.base, addrs: app.Addrs{MQTT: p.mqttAddr, HTTP: p.httpAddr}}
}

// wait waits for the process to exit and returns its state.
func (p *chatdProc) wait(t *testing.T) *os.ProcessState {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Fatalf("%s did not exit within %v of being signalled; killed it", p.name, stopTimeout)
	}
	return p.cmd.ProcessState
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *chatdProc) kill(t *testing.T) *os.ProcessState {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("kill %s: %v", p.name, err)
	}
	return p.wait(t)
}

// stop sends SIGTERM and requires a graceful exit with status 0.
func (p *chatdProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	st := p.wait(t)
	if !st.Success() {
		t.Fatalf("%s after SIGTERM: %v, want exit status 0\nstderr:\n%s", p.name, st, p.stderr)
	}
}

// cliResult is one finished chatd invocation.
type cliResult struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("chatd %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// runChatd runs the binary to completion with a timeout; env adds to the
// (MQCHAT_-free) environment.
func runChatd(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	return runChatdIn(t, "", env, args...)
}

// runChatdIn is runChatd with dir as the working directory ("": the
// test's).
func runChatdIn(t *testing.T, dir string, env []string, args ...string) cliResult {
	t.Helper()
	bin := chatdBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = childEnv(append(backendEnv(t), env...)...)
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{args: args, stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("did not exit within %v: %v", cliTimeout, res)
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	default:
		t.Fatalf("chatd %s: %v", strings.Join(args, " "), err)
	}
	return res
}
