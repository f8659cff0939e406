package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/mqchat/mqchat/internal/certs"
	"github.com/mqchat/mqchat/internal/origin"
)

// browserSetup is what browsers need from the node: one origin policy for
// the WebSocket and the API, and the TLS certificates of the listeners that
// serve TLS themselves, reloadable while they run.
type browserSetup struct {
	origins *origin.Policy
	// Each nil when its listener serves no TLS.
	mqttTLS, wsTLS, httpTLS *certs.Reloader
	stopWatch               context.CancelFunc
	watching                chan struct{} // closed when every watcher returned
}

// newBrowserSetup reads the certificates now, so that a missing file stops
// start-up naming it.
func (a *App) newBrowserSetup() (*browserSetup, error) {
	cfg := a.cfg
	if len(cfg.MQTT.WSAllowedOrigins) > 0 {
		a.log.Warn("mqtt.ws_allowed_origins is deprecated: its entries are added to http.allowed_origins; move them there",
			"mqtt.ws_allowed_origins", cfg.MQTT.WSAllowedOrigins)
	}
	policy, err := origin.New(cfg.AllowedOrigins())
	if err != nil {
		return nil, fmt.Errorf("app: http.allowed_origins: %w", err)
	}
	b := &browserSetup{origins: policy}
	log := a.log.With("component", "tls")
	load := func(key, cert, keyFile string) (*certs.Reloader, error) {
		if cert == "" {
			return nil, nil
		}
		r, err := certs.Load(cert, keyFile, log.With("key", key))
		if err != nil {
			return nil, fmt.Errorf("app: %s: %w", key, err)
		}
		return r, nil
	}
	if cfg.MQTT.TLSAddr != "" {
		if b.mqttTLS, err = load("mqtt.tls_cert", cfg.MQTT.TLSCert, cfg.MQTT.TLSKey); err != nil {
			return nil, err
		}
	}
	if cfg.MQTT.WSAddr != "" {
		if b.wsTLS, err = load("mqtt.ws_tls_cert", cfg.MQTT.WSTLSCert, cfg.MQTT.WSTLSKey); err != nil {
			return nil, err
		}
	}
	if b.httpTLS, err = load("http.tls_cert", cfg.HTTP.TLSCert, cfg.HTTP.TLSKey); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *browserSetup) reloaders() []*certs.Reloader {
	var out []*certs.Reloader
	for _, r := range []*certs.Reloader{b.mqttTLS, b.wsTLS, b.httpTLS} {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}

// tlsConfig is r's server configuration, nil without TLS.
func tlsConfig(r *certs.Reloader) *tls.Config {
	if r == nil {
		return nil
	}
	return r.TLSConfig()
}

// watch reloads each certificate when its files change, until stop.
func (b *browserSetup) watch() {
	ctx, cancel := context.WithCancel(context.Background())
	b.stopWatch = cancel
	b.watching = make(chan struct{})
	rs := b.reloaders()
	done := make(chan struct{}, len(rs))
	for _, r := range rs {
		go func() {
			r.Watch(ctx, certs.PollInterval)
			done <- struct{}{}
		}()
	}
	go func() {
		for range rs {
			<-done
		}
		close(b.watching)
	}()
}

func (b *browserSetup) stop() {
	if b.stopWatch != nil {
		b.stopWatch()
		<-b.watching
	}
}

// ReloadTLS reads every listener's certificate files again (chatd serve
// calls it on SIGHUP). New handshakes get the new certificates; a pair that
// fails to load keeps the one in use and is reported.
func (a *App) ReloadTLS() error {
	var errs []error
	for _, r := range a.browsers.reloaders() {
		if err := r.Reload(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
