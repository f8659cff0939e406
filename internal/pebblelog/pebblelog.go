// Package pebblelog routes the Pebble engine's logs and events into slog, for
// both Pebble databases in the binary: the chat store and mochi's sessions.
package pebblelog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble"
)

// Logger routes pebble's chatter (flushes, compactions, WAL recycling)
// to debug so it does not drown chatd's own logs.
type Logger struct{ L *slog.Logger }

func (s Logger) Infof(format string, args ...any) {
	if s.L.Enabled(context.Background(), slog.LevelDebug) {
		s.L.Debug(fmt.Sprintf(format, args...))
	}
}

// Fatalf must not return: pebble calls it on invariant violations and
// continuing would risk corrupting data. A panic keeps the stack, unlike
// pebble's default os.Exit.
func (s Logger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.L.Error(msg)
	panic("pebble: fatal: " + msg)
}

// EventListener raises the events an operator must see above debug; all
// others stay silent.
func EventListener(l *slog.Logger) *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			l.Error("pebble background error", "err", err)
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			l.Warn("pebble disk slow", "info", info.String())
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			l.Warn("pebble write stall", "reason", info.Reason)
		},
		WriteStallEnd: func() {
			l.Info("pebble write stall ended")
		},
	}
}
