package pebble

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble"
)

// slogLogger routes pebble's chatter (flushes, compactions, WAL recycling)
// to debug so it does not drown chatd's own logs.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Infof(format string, args ...any) {
	if s.l.Enabled(context.Background(), slog.LevelDebug) {
		s.l.Debug(fmt.Sprintf(format, args...))
	}
}

// Fatalf must not return: pebble calls it on invariant violations and
// continuing would risk corrupting data. A panic keeps the stack, unlike
// pebble's default os.Exit.
func (s slogLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.l.Error(msg)
	panic("pebble: fatal: " + msg)
}

// eventListener raises the events an operator must see above debug; all
// others stay silent.
func eventListener(l *slog.Logger) *pebble.EventListener {
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
