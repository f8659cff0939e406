package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/mqchat/mqchat/client"
	"github.com/mqchat/mqchat/internal/app"
	"github.com/mqchat/mqchat/internal/apptest"
)

// Alice sends Bob a message; Bob's client delivers it.
func Example() {
	srv, stop := exampleServer() // a chatd on loopback ports
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	dial := func(name string) *client.Client {
		c, err := client.Dial(ctx, client.Options{
			MQTTAddr: srv.MQTT,                        // or WSURL: "ws://host:8083/mqtt"
			HTTPBase: "http://" + srv.HTTP,            // to log in
			Username: name, Password: "correct horse", // or Token and UserID
			DeviceID:        "laptop",
			ProtocolVersion: 5, // or 3 for MQTT 3.1.1
		})
		if err != nil {
			panic(err)
		}
		return c
	}
	alice, bob := dial("alice"), dial("bob")
	defer alice.Close()
	defer bob.Close()

	sent, err := alice.Send(ctx, "user:"+bob.UserID(), "hello, Bob")
	if err != nil {
		panic(err)
	}
	fmt.Println("stored as seq", sent.Seq)

	for m := range bob.Messages() {
		fmt.Printf("bob got seq %d: %s\n", m.Seq, m.Text())
		if err := bob.MarkRead(ctx, m.Chat, m.Seq); err != nil {
			panic(err)
		}
		break
	}
	// Output:
	// stored as seq 1
	// bob got seq 1: hello, Bob
}

// exampleServer starts chatd in this process, as `chatd serve` would,
// with the accounts alice and bob (password "correct horse").
func exampleServer() (app.Addrs, func()) {
	dir, err := os.MkdirTemp("", "chatd-example")
	if err != nil {
		panic(err)
	}
	cfg := apptest.Config(dir)
	a, err := app.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		panic(err)
	}
	if err := a.Start(); err != nil {
		panic(err)
	}
	addrs := a.Addrs()
	for _, name := range []string{"alice", "bob"} {
		raw, _ := json.Marshal(map[string]string{"username": name, "password": "correct horse"})
		res, err := http.Post("http://"+addrs.HTTP+"/v1/auth/register", "application/json", bytes.NewReader(raw))
		if err != nil {
			panic(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			panic(fmt.Sprintf("register %s: %s", name, res.Status))
		}
	}
	return addrs, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
		_ = os.RemoveAll(dir)
	}
}
