package broker

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqchat/mqchat/internal/testcert"
)

// testCert writes a self-signed certificate for 127.0.0.1 into a temp dir
// and returns the file paths and a pool that trusts it.
func testCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	p := testcert.Write(t, t.TempDir(), 1)
	pool = x509.NewCertPool()
	pool.AddCert(p.Cert)
	return p.CertFile, p.KeyFile, pool
}

func dialTLS(t *testing.T, addr string, pool *x509.CertPool) net.Conn {
	t.Helper()
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: waitTimeout},
		Config:    &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}
	conn, err := d.DialContext(testCtx(t), "tcp", addr)
	if err != nil {
		t.Fatalf("dial tls %s: %v", addr, err)
	}
	// tls.Conn is not safe for paho's concurrent writers.
	return packets.NewThreadSafeConn(conn)
}

func TestTLSBadKeyPair(t *testing.T) {
	certFile, keyFile, _ := testCert(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")

	tests := []struct {
		name      string
		cert, key string
		wantInErr string
	}{
		{name: "missing cert", cert: missing, key: keyFile, wantInErr: missing},
		{name: "missing key", cert: certFile, key: missing, wantInErr: missing},
		{name: "garbage key", cert: certFile, key: garbage, wantInErr: garbage},
		{name: "garbage cert", cert: garbage, key: keyFile, wantInErr: garbage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(Options{
				TCPAddr: "127.0.0.1:0",
				TLSAddr: "127.0.0.1:0",
				TLSCert: tc.cert,
				TLSKey:  tc.key,
				Logger:  slog.New(slog.DiscardHandler),
			})
			if err == nil {
				_ = b.Close()
				t.Fatal("New succeeded, want error")
			}
			if !strings.Contains(err.Error(), tc.wantInErr) {
				t.Fatalf("error %q does not name %s", err, tc.wantInErr)
			}
		})
	}
}
