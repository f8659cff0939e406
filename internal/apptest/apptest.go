// Package apptest holds the one configuration every in-process chatd of
// the tests starts from, so a new default that would slow or break tests
// is lifted in one place.
package apptest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/app"
	"github.com/mqchat/mqchat/internal/config"
)

// Config is the defaults with every listener on a free loopback port, the
// data in dataDir and the cheapest bcrypt cost: hashing speed is never
// what a test measures.
func Config(dataDir string) config.Config {
	cfg := config.Default()
	cfg.DataDir = dataDir
	cfg.MQTT.Addr = "127.0.0.1:0"
	cfg.MQTT.WSAddr = "127.0.0.1:0"
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Auth.BcryptCost = 4
	return cfg
}

// Unthrottled lifts the limits that would only make a test depend on
// timing (send, auth, device-connect and group-operation rates; they have
// tests of their own) and has groups take their members at once instead
// of inviting strangers (group invitations have tests of their own).
func Unthrottled(cfg *config.Config) {
	cfg.Limits.SendRate = 0
	cfg.Limits.AuthRate = 0
	cfg.Limits.DeviceConnects = 0
	cfg.Limits.GroupOpRate = 0
	cfg.Limits.GroupInvites = "auto"
}

// Start runs a chatd built from cfg until the end of tb; a failed shutdown
// fails tb.
func Start(tb testing.TB, cfg config.Config, log *slog.Logger) *app.App {
	tb.Helper()
	a, err := app.New(cfg, log)
	if err != nil {
		tb.Fatalf("app.New: %v", err)
	}
	if err := a.Start(); err != nil {
		tb.Fatalf("app.Start: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
	})
	return a
}
