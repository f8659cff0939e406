// Package storetest is the conformance suite for store.Store backends. A
// backend's own test calls Run with a factory; every case gets a fresh store,
// so cases neither see nor depend on each other's data.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

// testCase is one conformance check against an empty store.
type testCase struct {
	name string
	run  func(t *testing.T, s store.Store)
}

// clockedCase is a testCase that also holds its store's clock, to move time
// (the dedupe window) or to check the times the store assigns.
type clockedCase struct {
	name string
	run  func(t *testing.T, s store.Store, clk *Clock)
}

// Clock is the time source a case hands its store: the real time plus an
// offset that only the case moves, so tests expire dedupe records without
// sleeping. It is safe for concurrent use (sweepers read it).
type Clock struct{ offset atomic.Int64 }

// Now is the value for a backend's Options.Now.
func (c *Clock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// Run runs the whole suite. newStore must return an empty, open store whose
// clock (its backend's Options.Now) is now, and register its own cleanup
// with t.
func Run(t *testing.T, newStore func(t *testing.T, now func() time.Time) store.Store) {
	t.Helper()
	groups := []struct {
		name  string
		cases []testCase
	}{
		{"Users", userTests()},
		{"Messages", messageTests()},
		{"Lifecycle", lifecycleTests()},
		{"Dedupe", dedupeTests()},
		{"Conflicts", conflictTests()},
		{"Groups", groupTests()},
		{"Cursors", cursorTests()},
		{"Devices", deviceTests()},
		{"Profiles", profileTests()},
		{"Sessions", sessionTests()},
		{"Accounts", accountTests()},
		{"Blocks", blockTests()},
		{"Privacy", privacyTests()},
		{"Requests", requestTests()},
		{"Invites", inviteTests()},
		{"DeviceKeys", deviceKeyTests()},
		{"Attachments", attachmentTests()},
		{"BatchReads", batchReadTests()},
		{"Retention", retentionTests()},
		{"Context", contextTests()},
		{"Ping", []testCase{{"Live", testPing}}},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.cases {
				t.Run(tc.name, func(t *testing.T) {
					tc.run(t, newStore(t, (&Clock{}).Now))
				})
			}
		})
	}
	clockedGroups := []struct {
		name  string
		cases []clockedCase
	}{
		{"DeviceMessages", deviceMessageTests()},
	}
	for _, g := range clockedGroups {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.cases {
				t.Run(tc.name, func(t *testing.T) {
					clk := &Clock{}
					tc.run(t, newStore(t, clk.Now), clk)
				})
			}
		})
	}
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// contextTests check that a call made with a dead context fails with that
// context's error, so callers can tell shutdown from storage failure.
func contextTests() []testCase {
	ops := []struct {
		name string
		call func(ctx context.Context, s store.Store) error
	}{
		{"AppendMessages", func(ctx context.Context, s store.Store) error {
			return s.AppendMessages(ctx, makeMessages("ctx:chat", 1, 3))
		}},
		{"History", func(ctx context.Context, s store.Store) error {
			_, err := s.History(ctx, "ctx:chat", store.HistoryQuery{Limit: 10})
			return err
		}},
		{"LastSeq", func(ctx context.Context, s store.Store) error {
			_, err := s.LastSeq(ctx, "ctx:chat")
			return err
		}},
		{"LookupDedupe", func(ctx context.Context, s store.Store) error {
			_, err := s.LookupDedupe(ctx, "u1", "cm1")
			return err
		}},
		{"CreateUser", func(ctx context.Context, s store.Store) error {
			return s.CreateUser(ctx, store.User{ID: "u2", Username: "bob", CreatedAt: time.Now()})
		}},
		{"UserByID", func(ctx context.Context, s store.Store) error {
			_, err := s.UserByID(ctx, "u1")
			return err
		}},
		{"UserByUsername", func(ctx context.Context, s store.Store) error {
			_, err := s.UserByUsername(ctx, "ann")
			return err
		}},
	}
	cases := make([]testCase, 0, len(ops))
	for _, op := range ops {
		cases = append(cases, testCase{"Canceled" + op.name, func(t *testing.T, s store.Store) {
			// Seed data so a read that ignored ctx would succeed rather than
			// fail for an unrelated reason.
			if err := s.AppendMessages(t.Context(), makeMessages("ctx:chat", 1, 3)); err != nil {
				t.Fatalf("seed AppendMessages: %v", err)
			}
			if err := s.CreateUser(t.Context(), store.User{ID: "u1", Username: "ann", CreatedAt: time.Now()}); err != nil {
				t.Fatalf("seed CreateUser: %v", err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := op.call(ctx, s); !errors.Is(err, context.Canceled) {
				t.Fatalf("%s with canceled context: err = %v, want context.Canceled", op.name, err)
			}
		}})
	}
	return cases
}

// makeMessages returns messages first..last of chat with every field set and
// SentAt an hour ago (well inside the dedupe window), at ms precision.
func makeMessages(chat string, first, last uint64) []store.Message {
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	h := fnv.New32a()
	h.Write([]byte(chat))
	chatBits := uint64(h.Sum32()) << 32
	msgs := make([]store.Message, 0, last-first+1)
	for seq := first; seq <= last; seq++ {
		m := store.Message{
			Chat:   chat,
			Seq:    seq,
			ID:     chatBits | seq,
			From:   fmt.Sprintf("user-%d", seq%3),
			CMID:   fmt.Sprintf("%s/cm-%d", chat, seq),
			Type:   "text",
			Body:   fmt.Appendf(nil, `{"chat":%q,"n":%d}`, chat, seq),
			SentAt: base.Add(time.Duration(seq) * time.Millisecond),
		}
		if seq%2 == 0 {
			m.ReplyTo = seq - 1
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func mustAppend(t *testing.T, s store.Store, msgs []store.Message) {
	t.Helper()
	if err := s.AppendMessages(t.Context(), msgs); err != nil {
		t.Fatalf("AppendMessages(%d msgs): %v", len(msgs), err)
	}
}

// sameInstant compares times at the millisecond precision backends may keep.
func sameInstant(a, b time.Time) bool {
	return a.Truncate(time.Millisecond).Equal(b.Truncate(time.Millisecond))
}

// messageDiff describes how got differs from want, "" when they match.
func messageDiff(got, want store.Message) string {
	var d []string
	field := func(name string, g, w any) {
		d = append(d, fmt.Sprintf("%s = %v, want %v", name, g, w))
	}
	if got.Chat != want.Chat {
		field("Chat", got.Chat, want.Chat)
	}
	if got.Seq != want.Seq {
		field("Seq", got.Seq, want.Seq)
	}
	if got.ID != want.ID {
		field("ID", got.ID, want.ID)
	}
	if got.From != want.From {
		field("From", got.From, want.From)
	}
	if got.CMID != want.CMID {
		field("CMID", got.CMID, want.CMID)
	}
	if got.Type != want.Type {
		field("Type", got.Type, want.Type)
	}
	if !bytes.Equal(got.Body, want.Body) {
		field("Body", string(got.Body), string(want.Body))
	}
	if got.ReplyTo != want.ReplyTo {
		field("ReplyTo", got.ReplyTo, want.ReplyTo)
	}
	if !sameInstant(got.SentAt, want.SentAt) {
		field("SentAt", got.SentAt, want.SentAt)
	}
	d = append(d, changeDiff(got, want)...)
	return strings.Join(d, "; ")
}

// checkPage fails unless got equals want element by element.
func checkPage(t *testing.T, what string, got, want []store.Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d messages (seqs %v), want %d (seqs %v)", what, len(got), seqs(got), len(want), seqs(want))
	}
	for i := range want {
		if d := messageDiff(got[i], want[i]); d != "" {
			t.Fatalf("%s: message %d (chat %q seq %d): %s", what, i, want[i].Chat, want[i].Seq, d)
		}
	}
}

func seqs(msgs []store.Message) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}
