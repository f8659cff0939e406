package broker

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// mochi reads every connection through a bufio.Reader of
// ClientNetReadBufferSize bytes, allocated when the client connects and kept
// while it idles. chatd gives mochi a tiny one (readBufferSize) and buffers
// underneath it instead, in a buffer taken from a pool only once the socket
// is readable and handed back as soon as it is drained: an idle connection
// holds no read buffer, a busy one still reads a whole burst per system call.

// readBufferSize is mochi's per-connection bufio buffer (bufio's minimum is
// 16): enough for a fixed header and a small packet at a time; larger reads
// go past it to the pooled buffer.
const readBufferSize = 64

// pooledReadSize is the pooled buffer: one system call takes up to this
// many bytes of a burst.
const pooledReadSize = 4 << 10

var readBuffers = sync.Pool{New: func() any { b := make([]byte, pooledReadSize); return &b }}

// lazyReader reads a socket through a pooled buffer held only while it has
// unread bytes. Only the connection's reader goroutine calls it.
type lazyReader struct {
	conn net.Conn
	raw  syscall.RawConn // nil: the connection cannot wait without a buffer (TLS, WebSocket)
	buf  *[]byte         // pooled; non-nil only while buf[r:w] is unread
	r, w int
}

func newLazyReader(c net.Conn) lazyReader {
	lr := lazyReader{conn: c}
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			lr.raw = raw
		}
	}
	return lr
}

// Read serves p from the pooled buffer, refilling it from the socket when
// empty. Deadlines apply as they do to the socket's own Read.
func (lr *lazyReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if lr.buf == nil {
		if lr.raw == nil || len(p) >= pooledReadSize {
			return lr.conn.Read(p)
		}
		if err := lr.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, (*lr.buf)[lr.r:lr.w])
	lr.r += n
	if lr.r == lr.w {
		readBuffers.Put(lr.buf)
		lr.buf, lr.r, lr.w = nil, 0, 0
	}
	return n, nil
}

// fill waits for the socket to be readable without holding a buffer, then
// reads what is there into one from the pool.
func (lr *lazyReader) fill() error {
	var (
		n     int
		rerr  error
		taken *[]byte
	)
	err := lr.raw.Read(func(fd uintptr) bool {
		b := readBuffers.Get().(*[]byte)
		for {
			n, rerr = syscall.Read(int(fd), *b)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			readBuffers.Put(b)
			return false // not readable yet: park with no buffer held
		}
		taken = b
		return true
	})
	if err != nil {
		if taken != nil {
			readBuffers.Put(taken)
		}
		return err
	}
	switch {
	case rerr != nil:
		readBuffers.Put(taken)
		return &net.OpError{Op: "read", Net: "tcp", Source: lr.conn.LocalAddr(), Addr: lr.conn.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	case n <= 0:
		readBuffers.Put(taken)
		return io.EOF
	}
	lr.buf, lr.r, lr.w = taken, 0, n
	return nil
}
