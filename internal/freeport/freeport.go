// Package freeport finds loopback ports for tests that must hand a port to
// a server they start (a child process, PostgreSQL) rather than pass it a
// listener.
package freeport

import (
	"context"
	"errors"
	"net"
	"syscall"
)

// Listen listens without SO_REUSEADDR. Go's net.Listen sets that option,
// with which Linux may pick a port still held by a TIME_WAIT or outgoing
// connection; a server told to listen there later can then fail. Without
// it the kernel only picks ports no socket uses.
func Listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 0)
		})
		return errors.Join(err, serr)
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

// Loopback returns a 127.0.0.1 port that was free a moment ago; another
// process may still take it before the caller's server binds it.
func Loopback() (int, error) {
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}
