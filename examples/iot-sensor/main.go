// Command iot-sensor is a device that reports readings to a chat group
// over MQTT 3.1.1, the protocol most deployed devices speak, through the
// Go client library. It reconnects forever: a reading taken while the
// network or the server is down is sent, once, when it comes back.
//
//	go run ./examples/iot-sensor -http http://localhost:8080 -mqtt localhost:1883 \
//	    -user sensor1 -password 'sensor1 password' -group GROUP_ID
//
// The account and the group are made beforehand over REST (see the
// README's walk-through); the sensor must be a member of the group.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mqchat/mqchat/client"
)

func main() {
	var (
		httpBase = flag.String("http", "http://localhost:8080", "chatd REST base URL (to log in)")
		mqttAddr = flag.String("mqtt", "localhost:1883", "chatd MQTT address")
		user     = flag.String("user", "", "the sensor's username")
		password = flag.String("password", "", "the sensor's password")
		group    = flag.String("group", "", "group id to report to")
		device   = flag.String("device", "sensor", "device id (stable per installation)")
		every    = flag.Duration("every", 10*time.Second, "time between readings")
	)
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *user == "" || *password == "" || *group == "" {
		fmt.Fprintln(os.Stderr, "iot-sensor: -user, -password and -group are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, client.Options{
		MQTTAddr: *mqttAddr, HTTPBase: *httpBase, Username: *user, Password: *password,
		DeviceID: *device, ProtocolVersion: 3, Logger: log,
	}, *group, *every); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("iot-sensor stopped", "err", err)
		os.Exit(1)
	}
}

// run dials until the server answers, then sends a reading every period
// until ctx ends. Only the first Dial can fail for good (a wrong password
// is not worth retrying forever); after it the client reconnects by
// itself.
func run(ctx context.Context, log *slog.Logger, o client.Options, group string, period time.Duration) error {
	var c *client.Client
	for pause := time.Second; ; pause = min(2*pause, time.Minute) {
		var err error
		if c, err = client.Dial(ctx, o); err == nil {
			break
		}
		if client.IsCode(err, "unauthenticated") || client.IsCode(err, "invalid_credentials") {
			return err
		}
		log.Warn("chatd not reachable yet", "err", err, "retry_in", pause)
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer c.Close()
	go func() {
		for e := range c.Events() {
			if e.Type == "connected" || e.Type == "disconnected" {
				log.Info("chatd " + e.Type)
			}
		}
	}()
	go func() {
		for range c.Messages() { // a sensor reads no chat, but must drain it
		}
	}()
	tick := time.NewTicker(period)
	defer tick.Stop()
	for n := 0; ; n++ {
		reading := map[string]any{
			"sensor":      o.DeviceID,
			"temperature": 20 + 5*math.Sin(float64(n)/10), // a stand-in for the real sensor
			"taken_at":    time.Now().UTC().Format(time.RFC3339),
		}
		// Send retries (one cmid) across reconnects until the reading is
		// stored, so a reading is neither lost nor stored twice.
		sent, err := c.SendMessage(ctx, client.Outgoing{To: "group:" + group, Type: "reading", Body: reading})
		switch {
		case err == nil:
			log.Info("reading stored", "chat", sent.Chat, "seq", sent.Seq)
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			log.Error("reading refused", "err", err) // e.g. not a member of the group
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
