package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/client"
	"github.com/mqchat/mqchat/internal/apptest"
)

// TestSensorReportsToGroup runs the sensor against a real chatd and reads
// its readings as another member of the group.
func TestSensorReportsToGroup(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	cfg := apptest.Config(t.TempDir())
	cfg.Limits.GroupInvites = "auto"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := apptest.Start(t, cfg, quiet)
	base := "http://" + a.Addrs().HTTP
	for _, name := range []string{"sensor1", "owner"} {
		raw, _ := json.Marshal(map[string]string{"username": name, "password": name + " password"})
		res, err := http.Post(base+"/v1/auth/register", "application/json", bytes.NewReader(raw))
		if err != nil || res.StatusCode != http.StatusCreated {
			t.Fatalf("register %s: %v %v", name, res, err)
		}
		_ = res.Body.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := func(name string, v int) client.Options {
		return client.Options{MQTTAddr: a.Addrs().MQTT, HTTPBase: base, Username: name, Password: name + " password",
			DeviceID: "d", ProtocolVersion: v, Logger: quiet}
	}
	owner, err := client.Dial(ctx, opts("owner", 5))
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	sensor, err := client.Dial(ctx, opts("sensor1", 5))
	if err != nil {
		t.Fatal(err)
	}
	sensorID := sensor.UserID()
	sensor.Close()
	g, err := owner.CreateGroup(ctx, "greenhouse", sensorID)
	if err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, quiet, opts("sensor1", 3), g.ID, 20*time.Millisecond) }()
	for n := 0; n < 3; {
		select {
		case m := <-owner.Messages():
			if m.Type != "reading" {
				continue
			}
			var r struct {
				Temperature *float64 `json:"temperature"`
			}
			if m.From != sensorID || m.Chat != g.Chat || json.Unmarshal(m.Body, &r) != nil || r.Temperature == nil {
				t.Fatalf("unexpected reading %+v", m)
			}
			n++
		case <-ctx.Done():
			t.Fatal("no readings from the sensor")
		}
	}
	stop()
	if err := <-done; err != context.Canceled {
		t.Fatalf("run returned %v, want context.Canceled", err)
	}
}
