package broker

import (
	"crypto/tls"
	"fmt"
)

// loadTLSConfig is called from New so that a missing or unreadable
// certificate fails startup with the offending paths rather than every
// handshake failing later.
func loadTLSConfig(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %q / key %q: %w", certFile, keyFile, err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}, nil
}
