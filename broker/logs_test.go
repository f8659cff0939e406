package broker

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

func TestMochiLogsRedactPayloadsAndDemoteRefusals(t *testing.T) {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   "users/u1/send",
		Payload:     []byte("secret message body"),
		PacketID:    7,
	}
	tests := []struct {
		name     string
		level    slog.Level // of the base logger
		log      func(l *slog.Logger)
		want     []string
		wantNone bool
	}{
		{"refused publish is debug", slog.LevelInfo, func(l *slog.Logger) {
			l.Error("publish packet error", "error", "payload format invalid", "packet", pk)
		}, nil, true},
		{"refused publish shows at debug, redacted", slog.LevelDebug, func(l *slog.Logger) {
			l.Error("publish packet error", "packet", pk)
		}, []string{"level=DEBUG", "users/u1/send", "payload_bytes=19"}, false},
		{"other records keep their level, redacted", slog.LevelInfo, func(l *slog.Logger) {
			l.Warn("error processing packet", "pk", pk)
		}, []string{"level=WARN", "packet_id=7"}, false},
		{"attrs added with With are redacted", slog.LevelInfo, func(l *slog.Logger) {
			l.With("packet", pk).Info("x")
		}, []string{"topic=users/u1/send"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tc.log(newMochiLogs(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level}))))
			out := buf.String()
			if strings.Contains(out, "secret message body") || strings.Contains(out, "[115 101 99") {
				t.Fatalf("payload leaked into logs: %s", out)
			}
			if tc.wantNone && out != "" {
				t.Fatalf("expected nothing logged, got %s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Fatalf("log %q lacks %q", out, w)
				}
			}
		})
	}
}
