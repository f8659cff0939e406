package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// testCert writes a self-signed certificate for 127.0.0.1 into a temp dir
// and returns the file paths and a pool that trusts it.
func testCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mqchat test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)

	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
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
