package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func deviceKeyTests() []testCase {
	return []testCase{
		{"PutAndList", testKeysPutAndList},
		{"KeyChanges", testKeysChanges},
		{"PrekeyIDReplaced", testKeysPrekeyReplaced},
		{"NoPrekeyLimit", testKeysNoLimit},
		{"ClaimLowestFirst", testKeysClaimOrder},
		{"ConcurrentClaims", testKeysConcurrentClaims},
		{"Delete", testKeysDelete},
		{"CanceledContext", testKeysCanceled},
	}
}

func deviceMessageTests() []clockedCase {
	return []clockedCase{
		{"SeqPerDevice", testDevMsgSeqPerDevice},
		{"SeqGrowsAfterAck", testDevMsgSeqAfterAck},
		{"Dedupe", testDevMsgDedupe},
		{"DedupeWindow", testDevMsgDedupeWindow},
		{"EmptyCMIDNotDeduplicated", testDevMsgEmptyCMID},
		{"Quota", testDevMsgQuota},
		{"PendingPages", testDevMsgPending},
		{"Ack", testDevMsgAck},
		{"ConcurrentPuts", testDevMsgConcurrent},
		{"ConcurrentDuplicates", testDevMsgConcurrentDups},
		{"CanceledContext", testDevMsgCanceled},
		{"DeleteAccountRemovesKeysAndMessages", testE2EDeleteAccount},
	}
}

// deviceKeys returns keys of uid's device whose identity is named by
// identity; every field differs between devices.
func deviceKeys(uid, device, identity string, spk uint32) store.DeviceKeys {
	return store.DeviceKeys{
		UserID:          uid,
		DeviceID:        device,
		IdentityKey:     []byte("ik:" + identity),
		SignedPrekeyID:  spk,
		SignedPrekey:    fmt.Appendf(nil, "spk:%s/%s/%d", uid, device, spk),
		SignedPrekeySig: fmt.Appendf(nil, "sig:%s/%s/%d", uid, device, spk),
		UpdatedAt:       time.Now().Truncate(time.Millisecond),
	}
}

// prekeys returns one-time prekeys with the given ids, their bytes tagged.
func prekeys(tag string, ids ...uint32) []store.OneTimePrekey {
	out := make([]store.OneTimePrekey, len(ids))
	for i, id := range ids {
		out[i] = store.OneTimePrekey{ID: id, Key: fmt.Appendf(nil, "otk:%s:%d", tag, id)}
	}
	return out
}

func mustPutKeys(t *testing.T, s store.Store, k store.DeviceKeys, otks []store.OneTimePrekey, wantChange store.KeyChange, wantRemaining int) {
	t.Helper()
	change, remaining, err := s.PutDeviceKeys(t.Context(), k, otks)
	if err != nil {
		t.Fatalf("PutDeviceKeys(%s/%s, %d prekeys): %v", k.UserID, k.DeviceID, len(otks), err)
	}
	if change != wantChange || remaining != wantRemaining {
		t.Fatalf("PutDeviceKeys(%s/%s, %d prekeys) = %v, %d; want %v, %d",
			k.UserID, k.DeviceID, len(otks), change, remaining, wantChange, wantRemaining)
	}
}

// checkKeys fails unless uid's published devices are exactly want, in order.
func checkKeys(t *testing.T, s store.Store, uid string, want ...store.DeviceKeys) {
	t.Helper()
	got, err := s.DeviceKeys(t.Context(), uid)
	if err != nil {
		t.Fatalf("DeviceKeys(%q): %v", uid, err)
	}
	if got == nil {
		t.Fatalf("DeviceKeys(%q) = nil, want a non-nil slice", uid)
	}
	if len(got) != len(want) {
		t.Fatalf("DeviceKeys(%q) = %d devices %+v, want %d %+v", uid, len(got), got, len(want), want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.UserID != w.UserID || g.DeviceID != w.DeviceID || !bytes.Equal(g.IdentityKey, w.IdentityKey) ||
			g.SignedPrekeyID != w.SignedPrekeyID || !bytes.Equal(g.SignedPrekey, w.SignedPrekey) ||
			!bytes.Equal(g.SignedPrekeySig, w.SignedPrekeySig) || !sameInstant(g.UpdatedAt, w.UpdatedAt) {
			t.Fatalf("DeviceKeys(%q)[%d] = %+v, want %+v", uid, i, g, w)
		}
	}
}

// checkClaims claims until the device is empty and fails unless the keys
// come out as want, in order, with the remaining count going down to 0.
func checkClaims(t *testing.T, s store.Store, uid, device string, want []store.OneTimePrekey) {
	t.Helper()
	for i, w := range want {
		got, remaining, err := s.ClaimOneTimePrekey(t.Context(), uid, device)
		if err != nil {
			t.Fatalf("claim %d of %s/%s: %v", i+1, uid, device, err)
		}
		if got.ID != w.ID || !bytes.Equal(got.Key, w.Key) || remaining != len(want)-i-1 {
			t.Fatalf("claim %d of %s/%s = {%d %q}, %d remaining; want {%d %q}, %d",
				i+1, uid, device, got.ID, got.Key, remaining, w.ID, w.Key, len(want)-i-1)
		}
	}
	checkNoClaim(t, s, uid, device)
}

func checkNoClaim(t *testing.T, s store.Store, uid, device string) {
	t.Helper()
	if got, n, err := s.ClaimOneTimePrekey(t.Context(), uid, device); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ClaimOneTimePrekey(%s/%s) = %+v, %d, %v; want ErrNotFound", uid, device, got, n, err)
	}
}

func testKeysPutAndList(t *testing.T, s store.Store) {
	phone := deviceKeys("u1", "phone", "p1", 1)
	laptop := deviceKeys("u1", "laptop", "l1", 7)
	other := deviceKeys("u2", "phone", "o1", 1)
	mustPutKeys(t, s, phone, prekeys("p", 1, 2), store.KeyAdded, 2)
	mustPutKeys(t, s, laptop, nil, store.KeyAdded, 0)
	mustPutKeys(t, s, other, prekeys("o", 1), store.KeyAdded, 1)
	checkKeys(t, s, "u1", laptop, phone)
	checkKeys(t, s, "u2", other)
	checkKeys(t, s, "nobody")
	// Keys up to the post-quantum sizes the service admits survive intact.
	big := deviceKeys("u3", "pq", "", 2)
	big.IdentityKey = bytes.Repeat([]byte{0, 0xff, 'k'}, 1400)
	big.SignedPrekey = bytes.Repeat([]byte{0xfe, 0}, 800)
	mustPutKeys(t, s, big, []store.OneTimePrekey{{ID: math.MaxUint32, Key: bytes.Repeat([]byte{1, 0}, 800)}}, store.KeyAdded, 1)
	checkKeys(t, s, "u3", big)
	checkClaims(t, s, "u3", "pq", []store.OneTimePrekey{{ID: math.MaxUint32, Key: bytes.Repeat([]byte{1, 0}, 800)}})
}

// A sequence of puts of one device, each with what it must report; the
// claims at the end show which prekeys survived.
func testKeysChanges(t *testing.T, s store.Store) {
	first := deviceKeys("u1", "phone", "A", 1)
	rotated := deviceKeys("u1", "phone", "A", 2) // new signed prekey, same identity
	rotated.UpdatedAt = rotated.UpdatedAt.Add(time.Second)
	reinstalled := deviceKeys("u1", "phone", "B", 1)
	reinstalled.UpdatedAt = rotated.UpdatedAt.Add(time.Second)
	steps := []struct {
		name          string
		keys          store.DeviceKeys
		otks          []store.OneTimePrekey
		change        store.KeyChange
		remaining     int
		listed        store.DeviceKeys
		wantRemaining []store.OneTimePrekey
	}{
		{"first publish", first, prekeys("A", 1, 2, 3), store.KeyAdded, 3, first, nil},
		{"same keys again", first, nil, store.KeyUnchanged, 3, first, nil},
		{"signed prekey rotated, topped up", rotated, prekeys("A", 4), store.KeyUnchanged, 4, rotated, nil},
		{"identity replaced", reinstalled, prekeys("B", 10, 11), store.KeyIdentityChanged, 2, reinstalled,
			prekeys("B", 10, 11)},
	}
	for _, st := range steps {
		change, remaining, err := s.PutDeviceKeys(t.Context(), st.keys, st.otks)
		if err != nil {
			t.Fatalf("%s: PutDeviceKeys: %v", st.name, err)
		}
		if change != st.change || remaining != st.remaining {
			t.Fatalf("%s: PutDeviceKeys = %v, %d; want %v, %d", st.name, change, remaining, st.change, st.remaining)
		}
		checkKeys(t, s, "u1", st.listed)
	}
	// The old identity's prekeys 1-4 went with it.
	checkClaims(t, s, "u1", "phone", prekeys("B", 10, 11))
	// Emptied by claims, the device keeps its keys and reports no change.
	mustPutKeys(t, s, reinstalled, nil, store.KeyUnchanged, 0)
	checkKeys(t, s, "u1", reinstalled)
}

// Publishing a prekey id the device already holds replaces that key; the
// count does not grow, and within one call the last key of an id wins.
func testKeysPrekeyReplaced(t *testing.T, s store.Store) {
	k := deviceKeys("u1", "phone", "A", 1)
	mustPutKeys(t, s, k, prekeys("old", 1, 2), store.KeyAdded, 2)
	mustPutKeys(t, s, k, prekeys("new", 2, 3), store.KeyUnchanged, 3)
	twice := []store.OneTimePrekey{{ID: 4, Key: []byte("first")}, {ID: 4, Key: []byte("second")}}
	mustPutKeys(t, s, k, twice, store.KeyUnchanged, 4)
	want := append(prekeys("old", 1), prekeys("new", 2, 3)...)
	want = append(want, store.OneTimePrekey{ID: 4, Key: []byte("second")})
	checkClaims(t, s, "u1", "phone", want)
}

// limits.max_one_time_prekeys is the service's rule; the store holds what
// it is given.
func testKeysNoLimit(t *testing.T, s store.Store) {
	ids := make([]uint32, 500)
	for i := range ids {
		ids[i] = uint32(i + 1)
	}
	mustPutKeys(t, s, deviceKeys("u1", "phone", "A", 1), prekeys("A", ids...), store.KeyAdded, 500)
	got, remaining, err := s.ClaimOneTimePrekey(t.Context(), "u1", "phone")
	if err != nil || got.ID != 1 || remaining != 499 {
		t.Fatalf("ClaimOneTimePrekey = %d, %d, %v; want id 1, 499 remaining", got.ID, remaining, err)
	}
}

func testKeysClaimOrder(t *testing.T, s store.Store) {
	mustPutKeys(t, s, deviceKeys("u1", "phone", "A", 1), prekeys("A", 500, 3, 9, 1, 70000), store.KeyAdded, 5)
	mustPutKeys(t, s, deviceKeys("u1", "laptop", "L", 1), prekeys("L", 2), store.KeyAdded, 1)
	// Ids compare as numbers, not as their decimal or byte strings.
	checkClaims(t, s, "u1", "phone", prekeys("A", 1, 3, 9, 500, 70000))
	checkClaims(t, s, "u1", "laptop", prekeys("L", 2))
	checkNoClaim(t, s, "u1", "tablet") // no keys at all
	checkNoClaim(t, s, "nobody", "phone")
}

// Claims racing for one device's prekeys hand each out once: the winners'
// keys are distinct, everyone else learns that none is left, and the
// remaining counts step down one by one.
func testKeysConcurrentClaims(t *testing.T, s store.Store) {
	const keys, claimers, rounds = 20, 50, 3
	k := deviceKeys("u1", "phone", "A", 1)
	for round := range rounds {
		ids := make([]uint32, keys)
		for i := range ids {
			ids[i] = uint32(round*1000 + i + 1)
		}
		published := prekeys(fmt.Sprint(round), ids...)
		change := store.KeyUnchanged
		if round == 0 {
			change = store.KeyAdded
		}
		mustPutKeys(t, s, k, published, change, keys)

		type result struct {
			key       store.OneTimePrekey
			remaining int
			err       error
		}
		results := make([]result, claimers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range claimers {
			wg.Go(func() {
				<-start
				key, remaining, err := s.ClaimOneTimePrekey(t.Context(), "u1", "phone")
				results[i] = result{key, remaining, err}
			})
		}
		close(start)
		wg.Wait()

		var won []store.OneTimePrekey
		var remainders []int
		for _, r := range results {
			switch {
			case r.err == nil:
				won = append(won, r.key)
				remainders = append(remainders, r.remaining)
			case !errors.Is(r.err, store.ErrNotFound):
				t.Fatalf("round %d: claim: %v", round, r.err)
			}
		}
		if len(won) != keys {
			t.Fatalf("round %d: %d of %d claims succeeded, want %d", round, len(won), claimers, keys)
		}
		slices.SortFunc(won, func(a, b store.OneTimePrekey) int { return int(a.ID) - int(b.ID) })
		for i, w := range published {
			if won[i].ID != w.ID || !bytes.Equal(won[i].Key, w.Key) {
				t.Fatalf("round %d: claimed keys %v, want each of %v once", round, won, published)
			}
		}
		slices.Sort(remainders)
		for i, r := range remainders {
			if r != i {
				t.Fatalf("round %d: remaining counts %v, want each of 0..%d once", round, remainders, keys-1)
			}
		}
		checkNoClaim(t, s, "u1", "phone")
	}
}

func testKeysDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	keep := deviceKeys("u1", "laptop", "L", 1)
	mustPutKeys(t, s, deviceKeys("u1", "phone", "A", 1), prekeys("A", 1, 2), store.KeyAdded, 2)
	mustPutKeys(t, s, keep, prekeys("L", 1), store.KeyAdded, 1)
	if err := s.DeleteDeviceKeys(ctx, "u1", "phone"); err != nil {
		t.Fatalf("DeleteDeviceKeys: %v", err)
	}
	checkKeys(t, s, "u1", keep)
	checkNoClaim(t, s, "u1", "phone")
	for _, c := range []struct{ uid, device string }{{"u1", "phone"}, {"u2", "laptop"}, {"u1", "ghost"}} {
		if err := s.DeleteDeviceKeys(ctx, c.uid, c.device); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("DeleteDeviceKeys(%s/%s): err = %v, want ErrNotFound", c.uid, c.device, err)
		}
	}
	// Publishing again starts afresh: the deleted prekeys do not return.
	again := deviceKeys("u1", "phone", "A", 2)
	mustPutKeys(t, s, again, prekeys("A2", 5), store.KeyAdded, 1)
	checkKeys(t, s, "u1", keep, again)
	checkClaims(t, s, "u1", "phone", prekeys("A2", 5))
	checkClaims(t, s, "u1", "laptop", prekeys("L", 1))
}

// Deleting an account removes its devices' keys, prekeys and the messages
// waiting for them; what it sent to others stays with the recipients.
func testE2EDeleteAccount(t *testing.T, s store.Store, clk *Clock) {
	ctx := t.Context()
	mustCreateUser(t, s, newUser("u1", "alice"))
	mustCreateUser(t, s, newUser("u2", "bob"))
	bobsPhone := deviceKeys("u2", "phone", "B", 1)
	mustPutKeys(t, s, deviceKeys("u1", "phone", "A", 1), prekeys("A", 1, 2), store.KeyAdded, 2)
	mustPutKeys(t, s, deviceKeys("u1", "laptop", "L", 1), prekeys("L", 1), store.KeyAdded, 1)
	mustPutKeys(t, s, bobsPhone, prekeys("B", 1), store.KeyAdded, 1)
	toAlice := mustPutDevMsg(t, s, clk, devMsg("u2", "phone", "u1", "phone", "c1"), 0)
	mustPutDevMsg(t, s, clk, devMsg("u2", "phone", "u1", "laptop", "c2"), 0)
	toBob := mustPutDevMsg(t, s, clk, devMsg("u1", "phone", "u2", "phone", "c3"), 0)

	if err := s.DeleteUser(ctx, "u1", clk.Now()); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	checkKeys(t, s, "u1")
	checkNoClaim(t, s, "u1", "phone")
	checkNoClaim(t, s, "u1", "laptop")
	checkPending(t, s, "u1", "phone", 0, nil)
	checkPending(t, s, "u1", "laptop", 0, nil)
	if n, err := s.AckDeviceMessages(ctx, "u1", "phone", toAlice.Seq); err != nil || n != 0 {
		t.Fatalf("AckDeviceMessages after the account's deletion = %d, %v; want 0", n, err)
	}
	checkKeys(t, s, "u2", bobsPhone)
	checkPending(t, s, "u2", "phone", 0, []store.DeviceMessage{toBob})
	checkClaims(t, s, "u2", "phone", prekeys("B", 1))
}

func testKeysCanceled(t *testing.T, s store.Store) {
	k := deviceKeys("u1", "phone", "A", 1)
	mustPutKeys(t, s, k, prekeys("A", 1), store.KeyAdded, 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]func() error{
		"PutDeviceKeys": func() error {
			_, _, err := s.PutDeviceKeys(ctx, deviceKeys("u1", "phone", "B", 2), prekeys("B", 2))
			return err
		},
		"DeviceKeys": func() error { _, err := s.DeviceKeys(ctx, "u1"); return err },
		"ClaimOneTimePrekey": func() error {
			_, _, err := s.ClaimOneTimePrekey(ctx, "u1", "phone")
			return err
		},
		"DeleteDeviceKeys": func() error { return s.DeleteDeviceKeys(ctx, "u1", "phone") },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with canceled context: err = %v, want context.Canceled", name, err)
		}
	}
	checkKeys(t, s, "u1", k)
	checkClaims(t, s, "u1", "phone", prekeys("A", 1))
}

// devMsg is a message from fromUser's fromDevice to toUser's toDevice, its
// body naming its cmid.
func devMsg(fromUser, fromDevice, toUser, toDevice, cmid string) store.DeviceMessage {
	return store.DeviceMessage{
		ToUser: toUser, ToDevice: toDevice, From: fromUser, FromDevice: fromDevice, CMID: cmid,
		Body: fmt.Appendf(nil, `{"ciphertext":%q}`, "ct-"+cmid),
	}
}

// putDevMsg stores m and checks what any successful put must return: m's
// fields, a seq, and SentAt taken from the store's clock during the call.
func putDevMsg(t *testing.T, s store.Store, clk *Clock, m store.DeviceMessage, maxPending int) (store.DeviceMessage, bool, error) {
	t.Helper()
	before := clk.Now().Truncate(time.Millisecond)
	// A caller's Seq and SentAt are ignored.
	in := m
	in.Seq, in.SentAt = 99, time.Unix(1, 0)
	got, dup, err := s.PutDeviceMessage(t.Context(), in, maxPending)
	after := clk.Now()
	if err != nil || dup {
		return got, dup, err
	}
	if got.ToUser != m.ToUser || got.ToDevice != m.ToDevice || got.From != m.From || got.FromDevice != m.FromDevice ||
		got.CMID != m.CMID || !bytes.Equal(got.Body, m.Body) || got.Seq == 0 || got.Seq == 99 {
		t.Fatalf("PutDeviceMessage(%+v) = %+v", m, got)
	}
	if got.SentAt.Before(before) || got.SentAt.After(after) {
		t.Fatalf("PutDeviceMessage: SentAt %v, want the store clock's now, within [%v, %v]", got.SentAt, before, after)
	}
	return got, dup, nil
}

func mustPutDevMsg(t *testing.T, s store.Store, clk *Clock, m store.DeviceMessage, maxPending int) store.DeviceMessage {
	t.Helper()
	got, dup, err := putDevMsg(t, s, clk, m, maxPending)
	if err != nil || dup {
		t.Fatalf("PutDeviceMessage(%s/%s cmid %q) = %+v, dup %v, %v; want a new message",
			m.ToUser, m.ToDevice, m.CMID, got, dup, err)
	}
	return got
}

// devMsgDiff describes how got differs from want, "" when they match.
func devMsgDiff(got, want store.DeviceMessage) string {
	if got.ToUser != want.ToUser || got.ToDevice != want.ToDevice || got.Seq != want.Seq || got.From != want.From ||
		got.FromDevice != want.FromDevice || got.CMID != want.CMID || !bytes.Equal(got.Body, want.Body) ||
		!sameInstant(got.SentAt, want.SentAt) {
		return fmt.Sprintf("got %+v (body %s), want %+v (body %s)", got, got.Body, want, want.Body)
	}
	return ""
}

// checkPending fails unless the device's messages after `after` are want.
func checkPending(t *testing.T, s store.Store, uid, device string, after uint64, want []store.DeviceMessage) {
	t.Helper()
	got, err := s.PendingDeviceMessages(t.Context(), uid, device, after, 1000)
	if err != nil {
		t.Fatalf("PendingDeviceMessages(%s/%s, after %d): %v", uid, device, after, err)
	}
	if got == nil {
		t.Fatalf("PendingDeviceMessages(%s/%s) = nil, want a non-nil slice", uid, device)
	}
	if len(got) != len(want) {
		t.Fatalf("PendingDeviceMessages(%s/%s, after %d): %d messages %+v, want %d", uid, device, after, len(got), got, len(want))
	}
	for i := range want {
		if d := devMsgDiff(got[i], want[i]); d != "" {
			t.Fatalf("PendingDeviceMessages(%s/%s, after %d)[%d]: %s", uid, device, after, i, d)
		}
	}
}

func testDevMsgSeqPerDevice(t *testing.T, s store.Store, clk *Clock) {
	var phone, laptop, other []store.DeviceMessage
	for i := range 3 {
		phone = append(phone, mustPutDevMsg(t, s, clk, devMsg("u2", "d", "u1", "phone", fmt.Sprint("p", i)), 0))
		laptop = append(laptop, mustPutDevMsg(t, s, clk, devMsg("u3", "", "u1", "laptop", fmt.Sprint("l", i)), 0))
	}
	// Device ids are per user: u2's "phone" is another mailbox.
	other = append(other, mustPutDevMsg(t, s, clk, devMsg("u1", "phone", "u2", "phone", "o"), 0))
	for i := range 3 {
		if phone[i].Seq != uint64(i+1) || laptop[i].Seq != uint64(i+1) {
			t.Fatalf("message %d: seqs %d and %d, want %d on each device", i, phone[i].Seq, laptop[i].Seq, i+1)
		}
	}
	if other[0].Seq != 1 {
		t.Fatalf("first message to u2/phone: seq %d, want 1", other[0].Seq)
	}
	checkPending(t, s, "u1", "phone", 0, phone)
	checkPending(t, s, "u1", "laptop", 0, laptop)
	checkPending(t, s, "u2", "phone", 0, other)
	checkPending(t, s, "u1", "tablet", 0, nil)
}

// A device tells new messages from seen ones by seq, so seqs never repeat,
// even once every message was acknowledged and deleted.
func testDevMsgSeqAfterAck(t *testing.T, s store.Store, clk *Clock) {
	for i := range 3 {
		mustPutDevMsg(t, s, clk, devMsg("u2", "d", "u1", "phone", fmt.Sprint("a", i)), 0)
	}
	if n, err := s.AckDeviceMessages(t.Context(), "u1", "phone", 3); err != nil || n != 3 {
		t.Fatalf("AckDeviceMessages(3) = %d, %v; want 3", n, err)
	}
	checkPending(t, s, "u1", "phone", 0, nil)
	next := mustPutDevMsg(t, s, clk, devMsg("u2", "d", "u1", "phone", "b"), 0)
	if next.Seq != 4 {
		t.Fatalf("seq after acking 1-3 = %d, want 4", next.Seq)
	}
	checkPending(t, s, "u1", "phone", 0, []store.DeviceMessage{next})
}

// checkDup fails unless putting m returns first as a duplicate; the
// duplicate carries everything of first but its body.
func checkDup(t *testing.T, s store.Store, m store.DeviceMessage, maxPending int, first store.DeviceMessage) {
	t.Helper()
	got, dup, err := s.PutDeviceMessage(t.Context(), m, maxPending)
	if err != nil || !dup {
		t.Fatalf("PutDeviceMessage(%s cmid %q to %s/%s) = %+v, dup %v, %v; want a duplicate",
			m.From, m.CMID, m.ToUser, m.ToDevice, got, dup, err)
	}
	want := first
	want.Body = got.Body
	if d := devMsgDiff(got, want); d != "" {
		t.Fatalf("duplicate of %s cmid %q: %s", m.From, m.CMID, d)
	}
}

func testDevMsgDedupe(t *testing.T, s store.Store, clk *Clock) {
	first := mustPutDevMsg(t, s, clk, devMsg("alice", "phone", "bob", "phone", "cm1"), 0)
	again := devMsg("alice", "phone", "bob", "phone", "cm1")
	again.Body = []byte(`"a different body"`)
	checkDup(t, s, again, 0, first)
	// The pair names one message whatever device the retry addresses.
	checkDup(t, s, devMsg("alice", "laptop", "carol", "tablet", "cm1"), 0, first)
	checkPending(t, s, "bob", "phone", 0, []store.DeviceMessage{first})
	checkPending(t, s, "carol", "tablet", 0, nil)
	// Acknowledged and deleted, the message still answers for its cmid.
	if n, err := s.AckDeviceMessages(t.Context(), "bob", "phone", first.Seq); err != nil || n != 1 {
		t.Fatalf("AckDeviceMessages = %d, %v; want 1", n, err)
	}
	checkDup(t, s, again, 0, first)
	// The same cmid from another sender, or another cmid, is a new message.
	other := mustPutDevMsg(t, s, clk, devMsg("dave", "phone", "bob", "phone", "cm1"), 0)
	next := mustPutDevMsg(t, s, clk, devMsg("alice", "phone", "bob", "phone", "cm2"), 0)
	if other.Seq != 2 || next.Seq != 3 {
		t.Fatalf("seqs %d and %d, want 2 and 3", other.Seq, next.Seq)
	}
	checkPending(t, s, "bob", "phone", 0, []store.DeviceMessage{other, next})
	// Chat messages keep their own dedupe records: a device message's cmid
	// does not answer for a chat send, nor the reverse.
	checkNoRef(t, s, "alice", "cm1")
	chat := makeMessages("g:e2e", 1, 1)
	chat[0].From, chat[0].CMID, chat[0].SentAt = "erin", "cm9", clk.Now().Truncate(time.Millisecond)
	mustAppend(t, s, chat)
	mustPutDevMsg(t, s, clk, devMsg("erin", "phone", "bob", "phone", "cm9"), 0)
}

// Past store.DedupeWindow a (From, CMID) names a new message.
func testDevMsgDedupeWindow(t *testing.T, s store.Store, clk *Clock) {
	m := devMsg("alice", "phone", "bob", "phone", "cm1")
	first := mustPutDevMsg(t, s, clk, m, 0)
	clk.Advance(store.DedupeWindow - time.Minute)
	checkDup(t, s, m, 0, first)
	clk.Advance(2 * time.Minute)
	second := mustPutDevMsg(t, s, clk, m, 0)
	if second.Seq != 2 {
		t.Fatalf("the expired cmid's new message: seq %d, want 2", second.Seq)
	}
	// From now on the pair answers with the new message.
	checkDup(t, s, devMsg("alice", "phone", "carol", "tablet", "cm1"), 0, second)
	checkPending(t, s, "bob", "phone", 0, []store.DeviceMessage{first, second})
}

func testDevMsgEmptyCMID(t *testing.T, s store.Store, clk *Clock) {
	a := mustPutDevMsg(t, s, clk, devMsg("alice", "phone", "bob", "phone", ""), 0)
	b := mustPutDevMsg(t, s, clk, devMsg("alice", "phone", "bob", "phone", ""), 0)
	if a.Seq != 1 || b.Seq != 2 {
		t.Fatalf("seqs %d and %d, want 1 and 2", a.Seq, b.Seq)
	}
	checkPending(t, s, "bob", "phone", 0, []store.DeviceMessage{a, b})
}

func testDevMsgQuota(t *testing.T, s store.Store, clk *Clock) {
	const limit = 3
	var stored []store.DeviceMessage
	for i := range limit {
		stored = append(stored, mustPutDevMsg(t, s, clk, devMsg("alice", "phone", "bob", "phone", fmt.Sprint("q", i)), limit))
	}
	refused := devMsg("alice", "phone", "bob", "phone", "over")
	if got, dup, err := s.PutDeviceMessage(t.Context(), refused, limit); !errors.Is(err, store.ErrQuota) {
		t.Fatalf("PutDeviceMessage to a full device = %+v, dup %v, %v; want ErrQuota", got, dup, err)
	}
	// A retry of a stored message is answered, full or not.
	checkDup(t, s, devMsg("alice", "phone", "bob", "phone", "q0"), limit, stored[0])
	// The bound is per device, and 0 means none.
	mustPutDevMsg(t, s, clk, devMsg("alice", "phone", "bob", "laptop", "elsewhere"), limit)
	checkPending(t, s, "bob", "phone", 0, stored)
	if n, err := s.AckDeviceMessages(t.Context(), "bob", "phone", 1); err != nil || n != 1 {
		t.Fatalf("AckDeviceMessages(1) = %d, %v; want 1", n, err)
	}
	// The refused send took no seq and left no dedupe record.
	retried := mustPutDevMsg(t, s, clk, refused, limit)
	if retried.Seq != limit+1 {
		t.Fatalf("seq after a refused send = %d, want %d", retried.Seq, limit+1)
	}
	unbounded := mustPutDevMsg(t, s, clk, devMsg("alice", "phone", "bob", "phone", "free"), 0)
	checkPending(t, s, "bob", "phone", 0, append(stored[1:], retried, unbounded))
}

func testDevMsgPending(t *testing.T, s store.Store, clk *Clock) {
	var all []store.DeviceMessage
	for i := range 10 {
		all = append(all, mustPutDevMsg(t, s, clk, devMsg("alice", "phone", "bob", "phone", fmt.Sprint("m", i)), 0))
	}
	cases := []struct {
		after      uint64
		limit      int
		first, end int // want all[first:end]
	}{
		{0, 3, 0, 3},
		{3, 3, 3, 6},
		{3, 100, 3, 10},
		{9, 5, 9, 10},
		{10, 5, 10, 10},
		{math.MaxUint64, 5, 10, 10},
		{0, 200, 0, 10},
	}
	for _, c := range cases {
		got, err := s.PendingDeviceMessages(t.Context(), "bob", "phone", c.after, c.limit)
		if err != nil {
			t.Fatalf("PendingDeviceMessages(after %d, limit %d): %v", c.after, c.limit, err)
		}
		want := all[c.first:c.end]
		if got == nil || len(got) != len(want) {
			t.Fatalf("PendingDeviceMessages(after %d, limit %d) = %d messages (%v), want %d",
				c.after, c.limit, len(got), got, len(want))
		}
		for i := range want {
			if d := devMsgDiff(got[i], want[i]); d != "" {
				t.Fatalf("PendingDeviceMessages(after %d, limit %d)[%d]: %s", c.after, c.limit, i, d)
			}
		}
	}
}

func testDevMsgAck(t *testing.T, s store.Store, clk *Clock) {
	var all []store.DeviceMessage
	for i := range 5 {
		all = append(all, mustPutDevMsg(t, s, clk, devMsg("alice", "phone", "bob", "phone", fmt.Sprint("m", i)), 0))
	}
	laptop := mustPutDevMsg(t, s, clk, devMsg("alice", "phone", "bob", "laptop", "l"), 0)
	steps := []struct {
		who, device string
		upTo        uint64
		deleted     int
		left        []store.DeviceMessage
	}{
		{"bob", "phone", 0, 0, all},
		{"bob", "phone", 2, 2, all[2:]},
		{"bob", "phone", 2, 0, all[2:]}, // again: nothing left to delete
		{"carol", "phone", 5, 0, all[2:]},
		{"bob", "tablet", 5, 0, all[2:]},
		{"bob", "phone", 4, 2, all[4:]},
		{"bob", "phone", math.MaxUint64, 1, nil},
	}
	for _, st := range steps {
		n, err := s.AckDeviceMessages(t.Context(), st.who, st.device, st.upTo)
		if err != nil || n != st.deleted {
			t.Fatalf("AckDeviceMessages(%s/%s, %d) = %d, %v; want %d", st.who, st.device, st.upTo, n, err, st.deleted)
		}
		checkPending(t, s, "bob", "phone", 0, st.left)
	}
	checkPending(t, s, "bob", "laptop", 0, []store.DeviceMessage{laptop})
}

// Concurrent sends to one device get distinct, gap-free seqs, each stored
// with its own message.
func testDevMsgConcurrent(t *testing.T, s store.Store, clk *Clock) {
	const senders = 50
	results := make([]store.DeviceMessage, senders)
	errs := make([]error, senders)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			<-start
			m := devMsg(fmt.Sprint("u", i%7), "d", "bob", "phone", fmt.Sprint("c", i))
			var dup bool
			results[i], dup, errs[i] = s.PutDeviceMessage(t.Context(), m, 0)
			if errs[i] == nil && dup {
				errs[i] = fmt.Errorf("cmid c%d reported as a duplicate", i)
			}
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent PutDeviceMessage: %v", err)
	}
	bySeq := slices.Clone(results)
	slices.SortFunc(bySeq, func(a, b store.DeviceMessage) int { return int(a.Seq) - int(b.Seq) })
	for i, m := range bySeq {
		if m.Seq != uint64(i+1) {
			t.Fatalf("seqs %v, want 1..%d each once", seqsOf(bySeq), senders)
		}
	}
	checkPending(t, s, "bob", "phone", 0, bySeq)
}

func seqsOf(msgs []store.DeviceMessage) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Seq
	}
	return out
}

// Retries of one (From, CMID) racing each other, to one device or to
// several, store the message once and all answer with it.
func testDevMsgConcurrentDups(t *testing.T, s store.Store, clk *Clock) {
	const retries = 20
	devices := []string{"phone", "laptop", "tablet"}
	for round := range 3 {
		cmid := fmt.Sprint("same-", round)
		results := make([]store.DeviceMessage, retries)
		dups := make([]bool, retries)
		errs := make([]error, retries)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range retries {
			wg.Go(func() {
				<-start
				m := devMsg("alice", "phone", "bob", devices[i%len(devices)], cmid)
				results[i], dups[i], errs[i] = s.PutDeviceMessage(t.Context(), m, 0)
			})
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: concurrent PutDeviceMessage: %v", round, err)
		}
		var first store.DeviceMessage
		fresh := 0
		for i, r := range results {
			if !dups[i] {
				fresh++
				first = r
			}
		}
		if fresh != 1 {
			t.Fatalf("round %d: %d of %d sends of one cmid stored a message, want 1", round, fresh, retries)
		}
		for i, r := range results {
			if r.ToDevice != first.ToDevice || r.Seq != first.Seq || !sameInstant(r.SentAt, first.SentAt) {
				t.Fatalf("round %d: send %d answered %s seq %d, the stored message is %s seq %d",
					round, i, r.ToDevice, r.Seq, first.ToDevice, first.Seq)
			}
		}
		total := 0
		for _, d := range devices {
			got, err := s.PendingDeviceMessages(t.Context(), "bob", d, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			total += len(got)
		}
		if total != round+1 {
			t.Fatalf("round %d: %d messages pending across bob's devices, want %d", round, total, round+1)
		}
	}
}

func testDevMsgCanceled(t *testing.T, s store.Store, clk *Clock) {
	kept := mustPutDevMsg(t, s, clk, devMsg("alice", "phone", "bob", "phone", "kept"), 0)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]func() error{
		"PutDeviceMessage": func() error {
			_, _, err := s.PutDeviceMessage(ctx, devMsg("alice", "phone", "bob", "phone", "lost"), 0)
			return err
		},
		"PendingDeviceMessages": func() error {
			_, err := s.PendingDeviceMessages(ctx, "bob", "phone", 0, 10)
			return err
		},
		"AckDeviceMessages": func() error { _, err := s.AckDeviceMessages(ctx, "bob", "phone", 10); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with canceled context: err = %v, want context.Canceled", name, err)
		}
	}
	checkPending(t, s, "bob", "phone", 0, []store.DeviceMessage{kept})
	// The canceled send took no seq.
	next := mustPutDevMsg(t, s, clk, devMsg("alice", "phone", "bob", "phone", "lost"), 0)
	if next.Seq != 2 {
		t.Fatalf("seq after a canceled send = %d, want 2", next.Seq)
	}
}
