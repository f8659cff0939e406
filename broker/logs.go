package broker

import (
	"context"
	"log/slog"

	"github.com/mochi-mqtt/server/v2/packets"
)

// mochiLogs filters mochi's log records before they reach ours. mochi
// attaches whole packets to some records, payloads included, which would put
// users' messages into the logs; and it logs every publish a hook refuses on
// purpose (a bad send, answered with a reason code) as an error.
type mochiLogs struct{ next slog.Handler }

func newMochiLogs(l *slog.Logger) *slog.Logger { return slog.New(mochiLogs{l.Handler()}) }

func (h mochiLogs) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h mochiLogs) Handle(ctx context.Context, r slog.Record) error {
	level := r.Level
	if r.Message == "publish packet error" {
		level = slog.LevelDebug // refused publishes are counted and answered by our hooks
	}
	if !h.next.Enabled(ctx, level) {
		return nil
	}
	out := slog.NewRecord(r.Time, level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redact(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h mochiLogs) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = redact(a)
	}
	return mochiLogs{h.next.WithAttrs(red)}
}

func (h mochiLogs) WithGroup(name string) slog.Handler { return mochiLogs{h.next.WithGroup(name)} }

// redact replaces a packet with what an operator needs to know about it.
func redact(a slog.Attr) slog.Attr {
	pk, ok := a.Value.Any().(packets.Packet)
	if !ok {
		return a
	}
	return slog.Group(a.Key,
		"type", packets.PacketNames[pk.FixedHeader.Type],
		"topic", pk.TopicName,
		"qos", pk.FixedHeader.Qos,
		"packet_id", pk.PacketID,
		"payload_bytes", len(pk.Payload),
	)
}
