package app

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqchat/mqchat/internal/metrics"
	"github.com/mqchat/mqchat/services/push"
	"github.com/mqchat/mqchat/services/push/fcm"
)

// buildPush picks the push provider and starts the push queue and tracker;
// with push.provider none it returns nils and nothing is pushed.
func (a *App) buildPush(reg prometheus.Registerer, presence push.Presence) error {
	cfg := a.cfg.Push
	log := a.log.With("component", "push")
	var prov push.Provider
	switch name := cfg.Provider; {
	case name == "none":
		return nil
	case name == "fcm" || name == "auto" && cfg.FCM.CredentialsFile != "":
		p, err := fcm.New(context.Background(), fcm.Options{CredentialsFile: cfg.FCM.CredentialsFile, Endpoint: cfg.FCM.Endpoint})
		if err != nil {
			return fmt.Errorf("app: push: %w", err)
		}
		prov = p
		log.Info("push through FCM", "credentials_file", cfg.FCM.CredentialsFile, "endpoint", cfg.FCM.Endpoint)
	default:
		prov = push.LogProvider{Logger: log}
		log.Info("push provider is log: pushes are logged, not sent (set push.fcm.credentials_file to send through FCM)")
	}
	// Read at scrape time, when a.push is set.
	m := metrics.NewPush(reg, func() int { return a.push.Depth() })
	a.push = push.New(a.store, prov, push.Options{
		Workers: cfg.Workers, QueueSize: cfg.QueueSize,
		MaxAttempts: cfg.MaxAttempts, Backoff: cfg.RetryBackoff, MaxBackoff: cfg.RetryBackoffMax,
		IncludeBody: cfg.IncludeBody, Cursors: a.store, Users: a.store,
		Logger: log, Metrics: m,
	})
	a.pushTracker = push.NewTracker(a.push, presence, cfg.AckTimeout)
	return nil
}

func (a *App) closePush() {
	if a.pushTracker != nil {
		a.pushTracker.Close()
	}
	if a.push != nil {
		a.push.Close()
	}
}
