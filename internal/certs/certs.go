// Package certs serves a TLS certificate from files that may be replaced
// while chatd runs: certificates are renewed every few weeks (ACME), and a
// renewal must not need a restart that drops every connection.
package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// PollInterval is how often Watch looks at the files' modification times.
const PollInterval = 10 * time.Second

// Reloader holds the current certificate of one listener. Handshakes read
// it without locking; Reload swaps it whole.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger
	cur               atomic.Pointer[tls.Certificate]

	mu    sync.Mutex // serialises Reload; guards stamp
	stamp [2]fileStamp
}

// fileStamp identifies one version of a file well enough to notice a
// replacement, whether written in place or renamed over.
type fileStamp struct {
	mod  time.Time
	size int64
}

// Load reads the pair once, so that a missing or unreadable certificate
// fails startup with the offending paths rather than every handshake
// failing later.
func Load(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

// TLSConfig returns a server configuration that presents the current
// certificate at each handshake.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.cur.Load(), nil
		},
	}
}

// Reload reads the files again. On failure the certificate in use stays
// (a half-written renewal must not take the listener down) and the error
// says why.
func (r *Reloader) Reload() error {
	if err := r.load(); err != nil {
		r.log.Warn("TLS certificate not reloaded; keeping the current one", "cert", r.certFile, "key", r.keyFile, "error", err)
		return err
	}
	r.log.Info("TLS certificate reloaded", "cert", r.certFile, "not_after", r.cur.Load().Leaf.NotAfter)
	return nil
}

func (r *Reloader) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Stamps first: a file replaced between the stat and the read is
	// read new and stamped old, so the next poll reads it once more
	// instead of never.
	stamps, err := r.stat()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %q / key %q: %w", r.certFile, r.keyFile, err)
	}
	r.cur.Store(&cert)
	r.stamp = stamps
	return nil
}

func (r *Reloader) stat() ([2]fileStamp, error) {
	var out [2]fileStamp
	for i, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return out, fmt.Errorf("TLS certificate: %w", err)
		}
		out[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return out, nil
}

// changed reports whether either file differs from what was last loaded.
func (r *Reloader) changed() bool {
	now, err := r.stat()
	if err != nil {
		// Mid-rename, or gone: nothing to load yet; the next poll sees it.
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return now != r.stamp
}

// Watch reloads whenever the files change, checking every interval, until
// ctx ends.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if r.changed() {
				_ = r.Reload()
			}
		}
	}
}
