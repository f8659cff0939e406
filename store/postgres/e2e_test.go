package postgres_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/pgtest"
	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/postgres"
)

// Two nodes are two Stores, each with its own pool, on one database: their
// claims of one device's prekeys still hand each key out once, and the
// remaining counts still step down one by one.
func TestClaimAcrossNodes(t *testing.T) {
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	var nodes []*postgres.Store
	for range 2 {
		s, err := postgres.Open(ctx, dsn, postgres.Options{SweepInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		nodes = append(nodes, s)
	}
	const keys, claimers = 30, 60
	otks := make([]store.OneTimePrekey, keys)
	for i := range otks {
		otks[i] = store.OneTimePrekey{ID: uint32(i + 1), Key: fmt.Appendf(nil, "otk-%d", i+1)}
	}
	k := store.DeviceKeys{UserID: "u1", DeviceID: "phone", IdentityKey: []byte("ik"), SignedPrekeyID: 1,
		SignedPrekey: []byte("spk"), SignedPrekeySig: []byte("sig"), UpdatedAt: time.Now()}
	if _, n, err := nodes[0].PutDeviceKeys(ctx, k, otks); err != nil || n != keys {
		t.Fatalf("PutDeviceKeys = %d, %v; want %d", n, err, keys)
	}

	var (
		mu        sync.Mutex
		seen      = map[uint32]bool{}
		remaining = map[int]bool{}
		notFound  int
	)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range claimers {
		wg.Go(func() {
			<-start
			key, left, err := nodes[i%2].ClaimOneTimePrekey(ctx, "u1", "phone")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, store.ErrNotFound):
				notFound++
			case err != nil:
				t.Errorf("claim on node %d: %v", i%2, err)
			case seen[key.ID] || remaining[left]:
				t.Errorf("claim on node %d: key %d, %d remaining, handed out before", i%2, key.ID, left)
			default:
				seen[key.ID], remaining[left] = true, true
			}
		})
	}
	close(start)
	wg.Wait()
	if len(seen) != keys || notFound != claimers-keys {
		t.Fatalf("%d keys claimed and %d refused, want %d and %d", len(seen), notFound, keys, claimers-keys)
	}
}

// Device-message dedupe records leave with the sweeper once expired; a
// reused pair makes a new message and a new record.
func TestDeviceDedupeSweep(t *testing.T) {
	ctx := t.Context()
	clk := &clock{}
	clk.set(time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC))
	s, err := postgres.Open(ctx, pgtest.DSN(t), postgres.Options{Now: clk.now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	m := store.DeviceMessage{ToUser: "bob", ToDevice: "phone", From: "alice", CMID: "c1", Body: []byte(`"x"`)}
	if _, dup, err := s.PutDeviceMessage(ctx, m, 0); err != nil || dup {
		t.Fatalf("PutDeviceMessage = dup %v, %v", dup, err)
	}
	m2 := m
	m2.CMID = "c2"
	clk.add(2 * time.Hour)
	if _, dup, err := s.PutDeviceMessage(ctx, m2, 0); err != nil || dup {
		t.Fatalf("PutDeviceMessage = dup %v, %v", dup, err)
	}
	clk.add(store.DedupeWindow - time.Hour) // c1 is 25 h old, c2 23 h
	if n, err := s.SweepExpired(ctx); err != nil || n != 1 {
		t.Fatalf("SweepExpired = %d, %v; want 1", n, err)
	}
	if got, dup, err := s.PutDeviceMessage(ctx, m2, 0); err != nil || !dup || got.Seq != 2 {
		t.Fatalf("retry of c2 after the sweep = seq %d, dup %v, %v; want the stored seq 2", got.Seq, dup, err)
	}
	if got, dup, err := s.PutDeviceMessage(ctx, m, 0); err != nil || dup || got.Seq != 3 {
		t.Fatalf("c1 after its record expired = seq %d, dup %v, %v; want a new message, seq 3", got.Seq, dup, err)
	}
	// The sweep touched records only: every message still waits.
	if msgs, err := s.PendingDeviceMessages(ctx, "bob", "phone", 0, 10); err != nil || len(msgs) != 3 {
		t.Fatalf("PendingDeviceMessages = %d messages, %v; want 3", len(msgs), err)
	}
}
