package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

type account struct {
	ID, Token string
}

type stats struct {
	P50, P90, P99, Max time.Duration
}

func (s stats) String() string {
	return fmt.Sprintf("p50 %v  p90 %v  p99 %v  max %v", s.P50, s.P90, s.P99, s.Max)
}

func summarize(d []time.Duration) stats {
	if len(d) == 0 {
		return stats{}
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(len(d)-1, int(q*float64(len(d))))] }
	return stats{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: d[len(d)-1]}
}

type result struct {
	Scenario           string        `json:"scenario"`
	Members            int           `json:"members"`
	Messages           int           `json:"messages"`
	DeliveriesExpected int           `json:"deliveries_expected"`
	DeliveriesReceived int64         `json:"deliveries_received"`
	Duplicates         int64         `json:"duplicates"`
	SendErrors         int           `json:"send_errors"`
	Puback             stats         `json:"puback_latency"`
	LastMember         stats         `json:"last_member_latency"`
	Elapsed            time.Duration `json:"elapsed"`
	DeliveriesPerSec   float64       `json:"deliveries_per_sec"`
}

func (r result) print(w io.Writer) {
	fmt.Fprintf(w, "scenario %s: %d members, %d messages\n", r.Scenario, r.Members, r.Messages)
	fmt.Fprintf(w, "  deliveries   %d of %d (%d duplicates), %d send errors\n", r.DeliveriesReceived, r.DeliveriesExpected, r.Duplicates, r.SendErrors)
	fmt.Fprintf(w, "  PUBACK       %v\n", r.Puback)
	fmt.Fprintf(w, "  last member  %v\n", r.LastMember)
	fmt.Fprintf(w, "  elapsed %v, %.0f deliveries/s\n", r.Elapsed.Round(time.Millisecond), r.DeliveriesPerSec)
}

func groupScenario(ctx context.Context, o options, log *slog.Logger) (result, error) {
	api := &restClient{base: "http://" + o.HTTP, http: &http.Client{Timeout: 30 * time.Second}}
	log.Info("registering users", "count", o.Members)
	users, err := api.registerMany(ctx, o.Prefix, o.Members)
	if err != nil {
		return result{}, err
	}
	sender := users[0]
	ids := make([]string, 0, o.Members-1)
	for _, u := range users[1:] {
		ids = append(ids, u.ID)
	}
	var g struct {
		GroupID string `json:"group_id"`
	}
	if err := api.do(ctx, "POST", "/v1/groups", sender.Token, map[string]any{"name": o.Prefix, "members": ids}, &g); err != nil {
		return result{}, fmt.Errorf("create group: %w", err)
	}

	// arrivals[i] counts members holding message i; done[i] is when the last did.
	arrivals := make([]atomic.Int64, o.Messages)
	done := make([]atomic.Int64, o.Messages) // unix nanos
	var received, dups atomic.Int64
	recipients := int64(o.Members - 1)
	log.Info("connecting members", "count", o.Members)
	clients := make([]*paho.Client, 0, o.Members)
	defer func() {
		for _, c := range clients {
			_ = c.Disconnect(&paho.Disconnect{})
		}
	}()
	for i, u := range users {
		seen := make(map[int]bool)
		var mu sync.Mutex
		member := i > 0
		c, err := connect(ctx, o.MQTT, u, "bench", func(p *paho.Publish) {
			if !member {
				return
			}
			var m struct {
				CMID string `json:"cmid"`
			}
			if json.Unmarshal(p.Payload, &m) != nil || !strings.HasPrefix(m.CMID, "m") {
				return
			}
			n, err := strconv.Atoi(m.CMID[1:])
			if err != nil || n < 0 || n >= o.Messages {
				return
			}
			mu.Lock()
			dup := seen[n]
			seen[n] = true
			mu.Unlock()
			if dup {
				dups.Add(1)
				return
			}
			received.Add(1)
			if arrivals[n].Add(1) == recipients {
				done[n].Store(time.Now().UnixNano())
			}
		})
		if err != nil {
			return result{}, fmt.Errorf("connect member %d: %w", i, err)
		}
		clients = append(clients, c)
	}

	body := strings.Repeat("x", o.Body)
	sent := make([]time.Time, o.Messages)
	var acks []time.Duration
	sendErrors := 0
	start := time.Now()
	log.Info("sending", "messages", o.Messages)
	for i := 0; i < o.Messages && ctx.Err() == nil; i++ {
		payload, _ := json.Marshal(map[string]any{"to": "group:" + g.GroupID, "cmid": fmt.Sprintf("m%d", i), "body": body})
		sent[i] = time.Now()
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := clients[0].Publish(pctx, &paho.Publish{Topic: "users/" + sender.ID + "/send", QoS: 1, Payload: payload})
		cancel()
		if err != nil || resp == nil || resp.ReasonCode != 0 {
			sendErrors++
			continue
		}
		acks = append(acks, time.Since(sent[i]))
	}
	want := int64(o.Messages-sendErrors) * recipients
	for received.Load() < want && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond) // polling the counters, not timing anything
	}
	elapsed := time.Since(start)
	var last []time.Duration
	for i := range done {
		if t := done[i].Load(); t != 0 {
			last = append(last, time.Unix(0, t).Sub(sent[i]))
		}
	}
	res := result{
		Scenario: "group", Members: o.Members, Messages: o.Messages,
		DeliveriesExpected: int(int64(o.Messages) * recipients), DeliveriesReceived: received.Load(),
		Duplicates: dups.Load(), SendErrors: sendErrors,
		Puback: summarize(acks), LastMember: summarize(last), Elapsed: elapsed,
		DeliveriesPerSec: float64(received.Load()) / elapsed.Seconds(),
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("stopped before every delivery arrived (%d of %d): %w", received.Load(), want, ctx.Err())
	}
	return res, nil
}

func connect(ctx context.Context, addr string, u account, device string, onMsg func(*paho.Publish)) (*paho.Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			onMsg(p.Packet)
			return true, nil
		}},
	})
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ack, err := c.Connect(cctx, &paho.Connect{
		ClientID: u.ID + "/" + device, Username: u.ID, UsernameFlag: true,
		Password: []byte(u.Token), PasswordFlag: true, KeepAlive: 60, CleanStart: true,
	})
	if err != nil {
		return nil, fmt.Errorf("connect: %w (%+v)", err, ack)
	}
	if _, err := c.Subscribe(cctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "users/" + u.ID + "/inbox", QoS: 1}}}); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	return c, nil
}

type restClient struct {
	base string
	http *http.Client
}

// do sends a JSON request, retrying after 429s as the server asks.
func (r *restClient) do(ctx context.Context, method, path, token string, in, out any) error {
	raw, err := json.Marshal(in)
	if err != nil {
		return err
	}
	for {
		req, err := http.NewRequestWithContext(ctx, method, r.base+path, bytes.NewReader(raw))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := r.http.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusTooManyRequests {
			wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			select {
			case <-time.After(time.Duration(max(wait, 1)) * time.Second):
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, body)
		}
		if out != nil {
			return json.Unmarshal(body, out)
		}
		return nil
	}
}

func (r *restClient) registerMany(ctx context.Context, prefix string, n int) ([]account, error) {
	users := make([]account, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var tok struct {
				UserID      string `json:"user_id"`
				AccessToken string `json:"access_token"`
			}
			name := fmt.Sprintf("%s-%d", prefix, i)
			if err := r.do(ctx, "POST", "/v1/auth/register", "", map[string]string{"username": name, "password": "bench password"}, &tok); err != nil {
				errs <- fmt.Errorf("register %s: %w", name, err)
				return
			}
			users[i] = account{ID: tok.UserID, Token: tok.AccessToken}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return users, nil
}
