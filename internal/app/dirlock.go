package app

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// One process at a time owns a data dir: a server, or the CLI working on
// it offline. The store has a lock of its own, but only for Pebble, and its
// refusal reads "resource temporarily unavailable"; this lock covers every
// backend (the data dir also holds MQTT sessions and the JWT secret) and
// says who holds it. flock is released by the kernel when the holder dies,
// so a SIGKILLed server leaves nothing to clean up.
const lockFileName = "chatd.lock"

// ErrDataDirInUse is wrapped by the error of a data dir another process
// holds.
var ErrDataDirInUse = errors.New("data dir in use")

// dirLock is a held data dir lock.
type dirLock struct{ f *os.File }

// lockDataDir takes dir's lock, which must exist, for this process; the
// holder's pid is written into the file for the next one's error message.
func lockDataDir(dir string) (*dirLock, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, privateFileMode)
	if err != nil {
		return nil, fmt.Errorf("app: data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, inUseError(dir)
		}
		return nil, fmt.Errorf("app: data dir lock %s: %w", path, err)
	}
	// Best effort: the pid only improves the message someone else sees.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// release gives the data dir up. The file stays: removing it would let a
// process that opened it before the removal lock an orphan.
func (l *dirLock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor drops the flock
	l.f = nil
	return err
}

// inUseError is the one line an operator gets for a data dir another
// process holds, naming the dir, the holder and the admin socket through
// which a running server is reached.
func inUseError(dir string) error {
	abs := absDir(dir)
	sock := filepath.Join(abs, adminSocketName)
	pid := ""
	if b, err := os.ReadFile(filepath.Join(dir, lockFileName)); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			pid = fmt.Sprintf(" (pid %d)", n)
		}
	}
	if socketAnswers(sock) {
		return fmt.Errorf("%w: %s is held by a running chatd server%s, whose admin socket %s answers: stop it first, or use another data_dir",
			ErrDataDirInUse, abs, pid, sock)
	}
	return fmt.Errorf("%w: %s is held by another chatd process%s, and no server answers on its admin socket %s: wait for that process to finish, or stop it",
		ErrDataDirInUse, abs, pid, sock)
}

// socketAnswers reports whether a server accepts connections on the admin
// socket at path.
func socketAnswers(path string) bool {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// absDir is dir made absolute for messages: "./data" says nothing about
// which data dir was meant when the command ran from somewhere else.
func absDir(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}
