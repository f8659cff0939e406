package certs

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/testcert"
)

const waitTimeout = 5 * time.Second

// serve runs a TLS listener with r's configuration that completes
// handshakes and hangs up.
func serve(t *testing.T, r *Reloader) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", r.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				_ = c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// served returns the serial number of the certificate the server presents.
func served(t *testing.T, addr string, trust ...testcert.Pair) int64 {
	t.Helper()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: waitTimeout}, Config: &tls.Config{RootCAs: testcert.Pool(trust...), MinVersion: tls.VersionTLS12}}
	c, err := d.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	first := testcert.Write(t, dir, 1)
	r, err := Load(first.CertFile, first.KeyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r)
	if got := served(t, addr, first); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}

	second := testcert.Write(t, dir, 2)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := served(t, addr, first, second); got != 2 {
		t.Fatalf("after Reload: serial %d, want 2", got)
	}

	// A broken renewal keeps the certificate in use.
	if err := os.WriteFile(second.KeyFile, []byte("half a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("Reload of a broken key succeeded")
	}
	if got := served(t, addr, first, second); got != 2 {
		t.Fatalf("after a failed Reload: serial %d, want 2", got)
	}
}

func TestWatchReloadsChangedFiles(t *testing.T) {
	dir := t.TempDir()
	first := testcert.Write(t, dir, 1)
	r, err := Load(first.CertFile, first.KeyFile, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Watch(ctx, 10*time.Millisecond); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	second := testcert.Write(t, dir, 2)
	deadline := time.Now().Add(waitTimeout)
	for served(t, addr, first, second) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the replaced certificate was not picked up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	pair := testcert.Write(t, t.TempDir(), 1)
	missing := t.TempDir() + "/missing.pem"
	for _, tc := range []struct{ cert, key string }{{missing, pair.KeyFile}, {pair.CertFile, missing}} {
		if _, err := Load(tc.cert, tc.key, nil); err == nil {
			t.Errorf("Load(%s, %s) succeeded", tc.cert, tc.key)
		} else if !strings.Contains(err.Error(), missing) {
			t.Errorf("error %q does not name %s", err, missing)
		}
	}
}
