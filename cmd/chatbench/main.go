// Command chatbench is mqchat's load generator: real MQTT clients
// (paho.golang) against a running chatd, reporting throughput and latency.
// Every run is bounded in count and time and targets loopback addresses only.
//
// Scenarios:
//
//	group: one sender publishes messages to a group of N members and the
//	       tool measures the sender's PUBACK latency (= durable store) and
//	       the time until the last member has each message.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"time"
)

type options struct {
	HTTP     string
	MQTT     string
	Members  int
	Messages int
	Body     int
	Timeout  time.Duration
	JSON     bool
	Prefix   string
}

func main() {
	var o options
	fs := flag.NewFlagSet("chatbench", flag.ContinueOnError)
	fs.StringVar(&o.HTTP, "http", "127.0.0.1:8080", "chatd REST address (loopback only)")
	fs.StringVar(&o.MQTT, "mqtt", "127.0.0.1:1883", "chatd MQTT TCP address (loopback only)")
	fs.IntVar(&o.Members, "members", 100, "group size, sender included (2-100000)")
	fs.IntVar(&o.Messages, "messages", 50, "messages the sender publishes, one at a time (1-100000)")
	fs.IntVar(&o.Body, "body", 256, "message body bytes")
	fs.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "the whole run stops after this")
	fs.BoolVar(&o.JSON, "json", false, "print the summary as JSON")
	fs.StringVar(&o.Prefix, "prefix", fmt.Sprintf("b%d", time.Now().Unix()%100000), "username prefix, so runs against one server do not collide")
	if len(os.Args) < 2 || os.Args[1] != "group" {
		fmt.Fprintln(os.Stderr, "usage: chatbench group [flags]")
		fs.PrintDefaults()
		os.Exit(2)
	}
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	if err := run(o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		os.Exit(1)
	}
}

func run(o options, stdout, stderr io.Writer) error {
	if o.Members < 2 || o.Members > 100000 || o.Messages < 1 || o.Messages > 100000 || o.Body < 1 || o.Body > 1<<20 {
		return errors.New("members 2-100000, messages 1-100000, body 1-1048576")
	}
	for _, a := range []string{o.HTTP, o.MQTT} {
		if err := loopbackOnly(a); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	res, err := groupScenario(ctx, o, log)
	if err != nil {
		return err
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	res.print(stdout)
	return nil
}

// loopbackOnly refuses targets off this machine: load goes to loopback only.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not a loopback address; chatbench only loads this machine", addr)
	}
	return nil
}
