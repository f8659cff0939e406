package retention_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/services/retention"
	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/pebble"
)

// clock is a manual time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func openStore(t *testing.T) *pebble.Store {
	t.Helper()
	st, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatalf("pebble.Open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// Ids are shaped as real ones (20 base32hex characters): the service
// refuses any other chat id.
const (
	ann, bob, cat      = "aaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccc"
	own, adm, mem, out = "oooooooooooooooooooo", "dddddddddddddddddddd", "mmmmmmmmmmmmmmmmmmmm", "uuuuuuuuuuuuuuuuuuuu"
	gid, nn            = "gggggggggggggggggggg", "nnnnnnnnnnnnnnnnnnnn"
	group              = "g:" + gid
	direct             = "d:" + ann + ":" + bob
	g1, g2             = "g:11111111111111111111", "g:22222222222222222222"
	mine, theirs       = "g:33333333333333333333", "g:44444444444444444444"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// appendAges stores one message per age (oldest first), each sent age
// before epoch.
func appendAges(t *testing.T, st store.Store, chatID string, ages ...time.Duration) {
	t.Helper()
	last, err := st.LastSeq(t.Context(), chatID)
	if err != nil {
		t.Fatalf("LastSeq: %v", err)
	}
	msgs := make([]store.Message, len(ages))
	for i, age := range ages {
		seq := last + uint64(i) + 1
		msgs[i] = store.Message{Chat: chatID, Seq: seq, ID: seq, From: "u1", CMID: fmt.Sprintf("%s-%d", chatID, seq),
			Type: "text", Body: []byte(`"x"`), SentAt: epoch.Add(-age)}
	}
	if err := st.AppendMessages(t.Context(), msgs); err != nil {
		t.Fatalf("AppendMessages: %v", err)
	}
}

func storedSeqs(t *testing.T, st store.Store, chatID string) []uint64 {
	t.Helper()
	ms, err := st.History(t.Context(), chatID, store.HistoryQuery{Limit: 1000})
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	var out []uint64
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func setRetention(t *testing.T, st store.Store, chatID, uid string, p time.Duration) {
	t.Helper()
	if err := st.SetRetention(t.Context(), store.RetentionSetting{Chat: chatID, UserID: uid, Period: p, UpdatedAt: epoch}); err != nil {
		t.Fatalf("SetRetention: %v", err)
	}
}

func TestEffectivePeriod(t *testing.T) {
	const (
		group  = group
		direct = direct
	)
	type set struct {
		uid string
		p   time.Duration
	}
	cases := []struct {
		name         string
		def, max     time.Duration
		chat         string
		settings     []set
		wantEffectve time.Duration
	}{
		{"forever by default", 0, 0, group, nil, 0},
		{"server default", time.Hour, 0, group, nil, time.Hour},
		{"group setting replaces default", time.Hour, 0, group, []set{{"", 2 * time.Hour}}, 2 * time.Hour},
		{"max caps a setting", 0, 3 * time.Hour, group, []set{{"", 5 * time.Hour}}, 3 * time.Hour},
		{"max caps forever", 0, 3 * time.Hour, group, nil, 3 * time.Hour},
		{"1:1 shorter side wins", 0, 0, direct, []set{{ann, 5 * time.Hour}, {bob, 2 * time.Hour}}, 2 * time.Hour},
		{"1:1 one side set, other forever", 0, 0, direct, []set{{bob, 2 * time.Hour}}, 2 * time.Hour},
		{"1:1 default shorter than a side", time.Hour, 0, direct, []set{{ann, 5 * time.Hour}}, time.Hour},
		{"1:1 both sides longer than default", time.Hour, 0, direct, []set{{ann, 5 * time.Hour}, {bob, 4 * time.Hour}}, 4 * time.Hour},
		{"1:1 user setting of a group ignored", 0, 0, group, []set{{ann, time.Hour}}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			for _, s := range tc.settings {
				setRetention(t, st, tc.chat, s.uid, s.p)
			}
			svc := retention.New(st, retention.Options{Default: tc.def, Max: tc.max})
			got, err := svc.Period(t.Context(), tc.chat)
			if err != nil || got != tc.wantEffectve {
				t.Fatalf("Period = %v, %v; want %v", got, err, tc.wantEffectve)
			}
		})
	}
}

func codeOf(err error) chat.Code {
	var ce *chat.Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	return ""
}

func TestSetAccess(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	err := st.CreateGroup(ctx, store.Group{ID: gid, Name: "g", CreatedBy: own, CreatedAt: epoch}, []store.Member{
		{GroupID: gid, UserID: own, Role: store.RoleOwner, JoinedAt: epoch},
		{GroupID: gid, UserID: adm, Role: store.RoleAdmin, JoinedAt: epoch},
		{GroupID: gid, UserID: mem, Role: store.RoleMember, JoinedAt: epoch},
	})
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	svc := retention.New(st, retention.Options{Default: 48 * time.Hour, Now: func() time.Time { return epoch }})
	cases := []struct {
		name, uid, chat string
		period          time.Duration
		wantCode        chat.Code
		want            retention.Setting
	}{
		{"owner sets the group's", own, group, time.Hour, "", retention.Setting{Own: time.Hour, Effective: time.Hour}},
		{"admin changes it", adm, group, 3 * time.Hour, "", retention.Setting{Own: 3 * time.Hour, Effective: 3 * time.Hour}},
		{"plain member refused", mem, group, time.Minute, chat.CodeNotAuthorized, retention.Setting{}},
		{"outsider sees no chat", out, group, time.Minute, chat.CodeNotFound, retention.Setting{}},
		{"unknown group", own, "g:" + nn, time.Minute, chat.CodeNotFound, retention.Setting{}},
		{"negative refused", own, group, -time.Second, chat.CodeInvalid, retention.Setting{}},
		{"1:1 ann's side", ann, direct, 72 * time.Hour, "", retention.Setting{Own: 72 * time.Hour, Effective: 48 * time.Hour}},
		{"1:1 bob's shorter side wins", bob, direct, 2 * time.Hour, "", retention.Setting{Own: 2 * time.Hour, Effective: 2 * time.Hour}},
		{"1:1 outsider", cat, direct, time.Hour, chat.CodeNotFound, retention.Setting{}},
		{"0 goes back to the default", bob, direct, 0, "", retention.Setting{Own: 0, Effective: 48 * time.Hour}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := svc.Set(ctx, tc.uid, tc.chat, tc.period)
			if code := codeOf(err); code != tc.wantCode || (tc.wantCode == "" && err != nil) {
				t.Fatalf("Set: %v (code %q), want code %q", err, code, tc.wantCode)
			}
			if got != tc.want {
				t.Fatalf("Set = %+v, want %+v", got, tc.want)
			}
			if tc.wantCode != "" {
				return
			}
			if got, err := svc.Get(ctx, tc.uid, tc.chat); err != nil || got != tc.want {
				t.Fatalf("Get = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	// A plain member may read the group's setting.
	if got, err := svc.Get(ctx, mem, group); err != nil || got.Effective != 3*time.Hour {
		t.Fatalf("member Get = %+v, %v; want effective 3h", got, err)
	}
}

type metricsRec struct {
	mu     sync.Mutex
	purged int
	passes int
}

func (m *metricsRec) ObservePurged(n int) { m.mu.Lock(); m.purged += n; m.mu.Unlock() }
func (m *metricsRec) ObservePass(float64) { m.mu.Lock(); m.passes++; m.mu.Unlock() }

func TestPassPurgesExpired(t *testing.T) {
	st := openStore(t)
	clk := &clock{t: epoch}
	h := time.Hour
	appendAges(t, st, g1, 5*h, 3*h, 90*time.Minute, 30*time.Minute, 0) // setting 1h
	appendAges(t, st, direct, 5*h, 3*h, 30*time.Minute)                // sides 4h and 2h
	appendAges(t, st, g2, 500*h, 0)                                    // no setting, no default
	setRetention(t, st, g1, "", h)
	setRetention(t, st, direct, ann, 4*h)
	setRetention(t, st, direct, bob, 2*h)
	m := &metricsRec{}
	svc := retention.New(st, retention.Options{Now: clk.Now, Metrics: m, Batch: 100})

	n, err := svc.Pass(t.Context())
	if err != nil || n != 5 {
		t.Fatalf("Pass = %d, %v; want 5", n, err)
	}
	for chatID, want := range map[string][]uint64{g1: {4, 5}, direct: {3}, g2: {1, 2}} {
		if got := storedSeqs(t, st, chatID); !slices.Equal(got, want) {
			t.Errorf("%s after pass: seqs %v, want %v", chatID, got, want)
		}
	}
	// Two hours on, g1's seq 4 and 5 and the 1:1's seq 3 have expired as
	// well; seqs go on.
	clk.Advance(2 * h)
	if n, err = svc.Pass(t.Context()); err != nil || n != 3 {
		t.Fatalf("second Pass = %d, %v; want 3", n, err)
	}
	if first, err := st.FirstSeq(t.Context(), g1); err != nil || first != 6 {
		t.Fatalf("FirstSeq(g:g1) = %d, %v; want 6", first, err)
	}
	if last, err := st.LastSeq(t.Context(), g1); err != nil || last != 5 {
		t.Fatalf("LastSeq(g:g1) = %d, %v; want 5", last, err)
	}
	if m.purged != 8 || m.passes != 2 {
		t.Fatalf("metrics: purged %d, passes %d; want 8, 2", m.purged, m.passes)
	}
}

// With a server default the pass visits every chat with messages, not just
// those with a setting; Batch bounds each chat's share of a pass.
func TestPassDefaultAndBatch(t *testing.T) {
	st := openStore(t)
	h := time.Hour
	appendAges(t, st, g1, 9*h, 8*h, 7*h, 6*h, 5*h, 0)
	appendAges(t, st, g2, 9*h, 0)
	svc := retention.New(st, retention.Options{Default: 2 * h, Chats: st, Batch: 2, Now: func() time.Time { return epoch }})
	for pass, want := range []int{3, 2, 1, 0} {
		n, err := svc.Pass(t.Context())
		if err != nil || n != want {
			t.Fatalf("pass %d = %d, %v; want %d", pass, n, err, want)
		}
	}
	if got := storedSeqs(t, st, g1); !slices.Equal(got, []uint64{6}) {
		t.Fatalf("g:g1 seqs %v, want [6]", got)
	}
	if got := storedSeqs(t, st, g2); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("g:g2 seqs %v, want [2]", got)
	}
}

type ownsOnly string

func (o ownsOnly) Owns(chatID string) bool { return chatID == string(o) }

func TestPassOnlyOwnedChats(t *testing.T) {
	st := openStore(t)
	appendAges(t, st, mine, 5*time.Hour)
	appendAges(t, st, theirs, 5*time.Hour)
	svc := retention.New(st, retention.Options{Default: time.Hour, Chats: st, Owner: ownsOnly(mine), Now: func() time.Time { return epoch }})
	if n, err := svc.Pass(t.Context()); err != nil || n != 1 {
		t.Fatalf("Pass = %d, %v; want 1", n, err)
	}
	if got := storedSeqs(t, st, theirs); len(got) != 1 {
		t.Fatalf("another node's chat was purged: %v", got)
	}
}

// archiver records what it is handed and checks the messages are still
// stored when it is called; fail makes it refuse.
type archiver struct {
	st   store.Store
	fail error
	got  map[string][]uint64
	errs []error
}

func (a *archiver) Archive(ctx context.Context, chatID string, msgs []store.Message) error {
	if a.fail != nil {
		return a.fail
	}
	for _, m := range msgs {
		ms, err := a.st.History(ctx, chatID, store.HistoryQuery{After: m.Seq - 1, Before: m.Seq + 1, Limit: 1})
		if err != nil || len(ms) != 1 || ms[0].Seq != m.Seq {
			a.errs = append(a.errs, fmt.Errorf("seq %d not stored while archived: %v %v", m.Seq, ms, err))
		}
		a.got[chatID] = append(a.got[chatID], m.Seq)
	}
	return nil
}

type releaser struct{ got map[string][]uint64 }

func (r *releaser) Release(_ context.Context, chatID string, msgs []store.Message) error {
	for _, m := range msgs {
		r.got[chatID] = append(r.got[chatID], m.Seq)
	}
	return nil
}

func TestArchiveBeforePurge(t *testing.T) {
	st := openStore(t)
	h := time.Hour
	appendAges(t, st, g1, 5*h, 4*h, 3*h, 0)
	setRetention(t, st, g1, "", 2*h)

	// A failing archiver keeps everything.
	a := &archiver{st: st, fail: errors.New("bucket unreachable"), got: map[string][]uint64{}}
	rel := &releaser{got: map[string][]uint64{}}
	svc := retention.New(st, retention.Options{Archiver: a, Releaser: rel, Batch: 2, Now: func() time.Time { return epoch }})
	if n, err := svc.Pass(t.Context()); err != nil || n != 0 {
		t.Fatalf("Pass with a failing archiver = %d, %v; want 0", n, err)
	}
	if got := storedSeqs(t, st, g1); len(got) != 4 {
		t.Fatalf("purged although the archive failed: %v", got)
	}

	a.fail = nil
	for pass, want := range []int{2, 1, 0} {
		if n, err := svc.Pass(t.Context()); err != nil || n != want {
			t.Fatalf("pass %d = %d, %v; want %d", pass, n, err, want)
		}
	}
	if len(a.errs) > 0 {
		t.Fatal(errors.Join(a.errs...))
	}
	if want := []uint64{1, 2, 3}; !slices.Equal(a.got[g1], want) || !slices.Equal(rel.got[g1], want) {
		t.Fatalf("archived %v, released %v; want %v both", a.got[g1], rel.got[g1], want)
	}
	if got := storedSeqs(t, st, g1); !slices.Equal(got, []uint64{4}) {
		t.Fatalf("seqs %v, want [4]", got)
	}
}

// Run makes passes on its own until its context ends.
func TestRun(t *testing.T) {
	st := openStore(t)
	appendAges(t, st, g1, 5*time.Hour, 0)
	m := &metricsRec{}
	svc := retention.New(st, retention.Options{Default: time.Hour, Chats: st, Interval: 10 * time.Millisecond, Metrics: m,
		Now: func() time.Time { return epoch }})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got := storedSeqs(t, st, g1); slices.Equal(got, []uint64{2}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run never purged the expired message")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not waiting for it to happen
	}
	cancel()
	<-done
}
