package broker

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair is a real loopback TCP connection: the lazy reader needs a file
// descriptor to wait on.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.FailNow()
	}
	t.Cleanup(func() { _ = server.Close(); _ = client.Close() })
	return server, client
}

// What mochi's reader reads through its small bufio.Reader comes out
// byte for byte as sent, whatever the mix of read sizes, and the pooled
// buffer is held only while bytes wait in it.
func TestLazyReaderDeliversTheStream(t *testing.T) {
	tests := []struct {
		name   string
		writes []int // sizes of the peer's writes
		reads  []int // sizes the reader asks for, cycled
	}{
		{"bytes one at a time", []int{1, 1, 5, 300}, []int{1}},
		{"small reads over a burst", []int{3 * pooledReadSize}, []int{2, 7, 64}},
		{"large reads bypass the pool", []int{pooledReadSize * 2, 10}, []int{pooledReadSize, 10}},
		{"mixed", []int{100, 5000, 1, 64}, []int{64, pooledReadSize + 1, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client := tcpPair(t)
			lr := newLazyReader(server)
			if lr.raw == nil {
				t.Fatal("a TCP connection should be read lazily")
			}
			var sent []byte
			for i, n := range tt.writes {
				sent = append(sent, bytes.Repeat([]byte{byte('a' + i)}, n)...)
			}
			go func() {
				off := 0
				for _, n := range tt.writes {
					if _, err := client.Write(sent[off : off+n]); err != nil {
						t.Error(err)
						return
					}
					off += n
				}
			}()
			_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
			var got []byte
			for i := 0; len(got) < len(sent); i++ {
				p := make([]byte, tt.reads[i%len(tt.reads)])
				n, err := lr.Read(p)
				if err != nil {
					t.Fatalf("read after %d of %d bytes: %v", len(got), len(sent), err)
				}
				got = append(got, p[:n]...)
				if (lr.buf != nil) != (lr.r < lr.w) {
					t.Fatalf("pooled buffer held=%v with %d unread bytes", lr.buf != nil, lr.w-lr.r)
				}
			}
			if !bytes.Equal(got, sent) {
				t.Fatalf("read %d bytes that differ from the %d sent", len(got), len(sent))
			}
			if lr.buf != nil {
				t.Fatal("pooled buffer still held with nothing left to read")
			}
		})
	}
}

// The socket's end and its deadline reach the reader as a plain Read
// would report them (mochi and the presence hook tell timeouts apart).
func TestLazyReaderEndAndDeadline(t *testing.T) {
	t.Run("peer closes", func(t *testing.T) {
		server, client := tcpPair(t)
		lr := newLazyReader(server)
		if _, err := client.Write([]byte("last")); err != nil {
			t.Fatal(err)
		}
		_ = client.Close()
		got, err := io.ReadAll(bufio.NewReaderSize(&lr, 16))
		if err != nil || string(got) != "last" {
			t.Fatalf("ReadAll = %q, %v; want \"last\", nil (io.EOF)", got, err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		server, _ := tcpPair(t)
		lr := newLazyReader(server)
		_ = server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := lr.Read(make([]byte, 8))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past the deadline: %v, want a timeout", err)
		}
		if lr.buf != nil {
			t.Fatal("a timed-out read holds a pooled buffer")
		}
	})
	t.Run("closed locally", func(t *testing.T) {
		server, _ := tcpPair(t)
		lr := newLazyReader(server)
		_ = server.Close()
		if _, err := lr.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed connection: %v, want net.ErrClosed", err)
		}
	})
}

// Connections without a file descriptor (TLS, WebSocket) are read directly.
func TestLazyReaderFallsBackWithoutFD(t *testing.T) {
	server, client := net.Pipe()
	t.Cleanup(func() { _ = server.Close(); _ = client.Close() })
	lr := newLazyReader(server)
	if lr.raw != nil {
		t.Fatal("a pipe has no file descriptor to wait on")
	}
	go func() { _, _ = client.Write([]byte("hello")) }()
	p := make([]byte, 8)
	n, err := lr.Read(p)
	if err != nil || string(p[:n]) != "hello" {
		t.Fatalf("Read = %q, %v", p[:n], err)
	}
}
