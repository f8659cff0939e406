package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/auth"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/pebble"
)

// historyManifest records what history-fill put into a data dir, so later
// runs reuse it instead of filling again.
type historyManifest struct {
	Format   int      `json:"format"` // fillFormat that wrote it; others are refilled
	Messages int      `json:"messages"`
	Reader   string   `json:"reader"` // username; password historyPassword
	Chats    []string `json:"chats"`
	PerChat  int      `json:"per_chat"`
}

const (
	// fillFormat 2: bodies are random text, which compresses like the
	// ciphertext of end-to-end encrypted clients (format 1 compressed to
	// almost nothing and made the store unrealistically small).
	fillFormat      = 2
	historyPassword = "bench password"
	manifestName    = "bench-history.json"
)

// historyFill writes o.Messages messages spread over o.Chats 1:1 chats of
// one reader straight into the embedded store under dataDir (chatd must
// not be running on it). It does nothing when the dir already holds at
// least that many.
func historyFill(ctx context.Context, o options, log *slog.Logger) error {
	mpath := filepath.Join(o.DataDir, manifestName)
	if m, err := readManifest(mpath); err == nil && m.Messages >= o.Messages && m.Format == fillFormat {
		log.Info("store already filled", "messages", m.Messages, "dir", o.DataDir)
		return nil
	}
	// A partial fill is not resumed: start over on a clean dir.
	if err := os.RemoveAll(o.DataDir); err != nil {
		return err
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return err
	}
	st, err := pebble.Open(filepath.Join(o.DataDir, "store"), pebble.Options{Logger: log.With("component", "store")})
	if err != nil {
		return err
	}
	defer st.Close()
	as, err := auth.New(st, auth.Options{Secret: []byte(strings.Repeat("k", 32)), BcryptCost: 4})
	if err != nil {
		return err
	}
	reader, err := as.CreateUser(ctx, "reader", historyPassword)
	if err != nil {
		return fmt.Errorf("create reader: %w", err)
	}
	m := historyManifest{Format: fillFormat, Reader: "reader", PerChat: o.Messages / o.Chats}
	peers := make([]store.User, o.Chats)
	for i := range peers {
		if peers[i], err = as.CreateUser(ctx, fmt.Sprintf("peer%d", i), historyPassword); err != nil {
			return fmt.Errorf("create peer: %w", err)
		}
		c := chat.DirectChatID(reader.ID, peers[i].ID)
		m.Chats = append(m.Chats, c)
		if err := st.JoinChat(ctx, reader.ID, c, time.Now()); err != nil {
			return err
		}
	}
	gen, err := ids.NewGenerator(0)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	randomBody := func() []byte {
		b := make([]byte, o.Body)
		b[0], b[len(b)-1] = '"', '"'
		for i := 1; i < len(b)-1; i++ {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return b
	}
	const batch = 2000
	msgs := make([]store.Message, 0, batch)
	start, lastLog := time.Now(), time.Now()
	// Round-robin over the chats, as a busy server interleaves them.
	for seq := 1; seq <= m.PerChat; seq++ {
		for i, c := range m.Chats {
			from := peers[i].ID
			if seq%2 == 0 {
				from = reader.ID
			}
			msgs = append(msgs, store.Message{Chat: c, Seq: uint64(seq), ID: gen.Next(), From: from,
				// The reader sends in every chat: a cmid per chat, since the
				// store refuses a live (sender, cmid) stored twice.
				CMID: fmt.Sprintf("h%d-%d", i, seq), Type: "text", Body: randomBody(), SentAt: time.Now()})
			if len(msgs) == batch {
				if err := st.AppendMessages(ctx, msgs); err != nil {
					return err
				}
				m.Messages += len(msgs)
				msgs = msgs[:0]
				if time.Since(lastLog) > 5*time.Second {
					lastLog = time.Now()
					log.Info("filling", "messages", m.Messages, "of", m.PerChat*o.Chats, "per_sec", int(float64(m.Messages)/time.Since(start).Seconds()))
				}
			}
		}
	}
	if err := st.AppendMessages(ctx, msgs); err != nil {
		return err
	}
	m.Messages += len(msgs)
	log.Info("filled", "messages", m.Messages, "took", time.Since(start).Round(time.Second))
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(mpath, raw, 0o600)
}

func readManifest(path string) (historyManifest, error) {
	var m historyManifest
	b, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", path, err)
	}
	if len(m.Chats) == 0 || m.PerChat < 1 {
		return m, errors.New(path + ": empty manifest")
	}
	return m, nil
}

// historyScenario pages through random points of the filled chats over the
// REST API of a chatd serving that data dir: 50 messages a page.
func historyScenario(ctx context.Context, o options, log *slog.Logger, stderr io.Writer) (report, error) {
	m, err := readManifest(filepath.Join(o.DataDir, manifestName))
	if err != nil {
		return report{}, fmt.Errorf("run history-fill first: %w", err)
	}
	api := newREST(o.HTTP)
	reader, err := api.login(ctx, m.Reader, historyPassword)
	if err != nil {
		return report{}, err
	}
	var c counters
	stop := make(chan struct{})
	go progress(stderr, &c, stop)
	defer close(stop)
	var lat recorder
	var wg sync.WaitGroup
	start := time.Now()
	per := o.Requests / o.Concurrency
	log.Info("paging", "messages", m.Messages, "chats", len(m.Chats), "requests", per*o.Concurrency, "concurrency", o.Concurrency)
	for w := range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range per {
				if ctx.Err() != nil {
					return
				}
				ch := m.Chats[rng.IntN(len(m.Chats))]
				before := 51 + rng.IntN(max(1, m.PerChat-50))
				var page struct {
					Messages []json.RawMessage `json:"messages"`
				}
				t0 := time.Now()
				c.sent.Add(1)
				err := api.do(ctx, "GET", fmt.Sprintf("/v1/chats/%s/messages?before=%d&limit=50", ch, before), reader.Token, nil, &page)
				if err != nil || len(page.Messages) != 50 {
					if c.errors.Add(1) <= 3 {
						log.Warn("page failed", "error", err, "messages", len(page.Messages))
					}
					continue
				}
				lat.add(time.Since(t0))
				c.received.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	return report{
		Scenario: "history", Target: "chatd",
		Params: map[string]any{"messages": m.Messages, "chats": len(m.Chats), "page": 50, "concurrency": o.Concurrency},
		Sent:   c.sent.Load(), Received: c.received.Load(), Expected: c.sent.Load(), Errors: c.errors.Load(),
		ElapsedSec: el.Seconds(), Throughput: float64(c.received.Load()) / el.Seconds(), Latency: lat.stats(),
	}, nil
}
