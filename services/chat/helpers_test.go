package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/store"
	pebblestore "github.com/mqchat/mqchat/store/pebble"
)

// hangTimeout only turns a deadlock into a test failure; no assertion
// depends on timing.
const hangTimeout = 20 * time.Second

var errInjected = errors.New("injected append failure")

// faultStore is the real pebble store with switchable faults and hooks.
type faultStore struct {
	*pebblestore.Store

	failAppend  atomic.Bool
	appendCalls atomic.Int64

	mu         sync.Mutex
	appendHook func(call int64, msgs []store.Message) error // before the real append
	userHook   func(ctx context.Context)                    // after the real UserByID
}

func (s *faultStore) AppendMessages(ctx context.Context, msgs []store.Message) error {
	n := s.appendCalls.Add(1)
	s.mu.Lock()
	hook := s.appendHook
	s.mu.Unlock()
	if hook != nil {
		if err := hook(n, msgs); err != nil {
			return err
		}
	}
	if s.failAppend.Load() {
		return fmt.Errorf("faultStore: append: %w", errInjected)
	}
	return s.Store.AppendMessages(ctx, msgs)
}

func (s *faultStore) UserByID(ctx context.Context, id string) (store.User, error) {
	u, err := s.Store.UserByID(ctx, id)
	s.mu.Lock()
	hook := s.userHook
	s.mu.Unlock()
	if hook != nil {
		hook(ctx)
	}
	return u, err
}

func (s *faultStore) setAppendHook(h func(call int64, msgs []store.Message) error) {
	s.mu.Lock()
	s.appendHook = h
	s.mu.Unlock()
}

func (s *faultStore) setUserHook(h func(ctx context.Context)) {
	s.mu.Lock()
	s.userHook = h
	s.mu.Unlock()
}

// delivery is one Deliver call.
type delivery struct {
	recipients []string
	msg        store.Message
}

// recorder is the Deliverer: it records every call in order. Fan-out is
// asynchronous, so reads first wait until the service has fanned out
// everything it stored.
type recorder struct {
	mu   sync.Mutex
	got  []delivery
	idle func() bool
}

func (r *recorder) settle() {
	if r.idle != nil {
		deadline := time.Now().Add(hangTimeout)
		for !r.idle() && time.Now().Before(deadline) {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

func (r *recorder) Deliver(recipients []string, m store.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, delivery{recipients: slices.Clone(recipients), msg: m})
}

func (r *recorder) all() []delivery {
	r.settle()
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *recorder) count() int {
	r.settle()
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

type commitObs struct {
	messages int
	err      error
}

// recMetrics records every observation.
type recMetrics struct {
	mu      sync.Mutex
	sends   map[string]int
	rejects map[Code]int
	commits []commitObs
}

func newRecMetrics() *recMetrics {
	return &recMetrics{sends: map[string]int{}, rejects: map[Code]int{}}
}

func (m *recMetrics) ObserveCommit(d time.Duration, messages int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commits = append(m.commits, commitObs{messages, err})
}

func (m *recMetrics) ObserveSend(result string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sends[result]++
}

func (m *recMetrics) ObserveReject(code Code) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rejects[code]++
}

type metricsSnapshot struct {
	sends   map[string]int
	rejects map[Code]int
	commits []commitObs
}

func (m *recMetrics) snapshot() metricsSnapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := metricsSnapshot{sends: map[string]int{}, rejects: map[Code]int{}, commits: slices.Clone(m.commits)}
	for k, v := range m.sends {
		s.sends[k] = v
	}
	for k, v := range m.rejects {
		s.rejects[k] = v
	}
	return s
}

func (s metricsSnapshot) totalRejects() int {
	n := 0
	for _, v := range s.rejects {
		n += v
	}
	return n
}

// committed sums the message counts of successful commits.
func (s metricsSnapshot) committed() int {
	n := 0
	for _, c := range s.commits {
		if c.err == nil {
			n += c.messages
		}
	}
	return n
}

// fixture is a service over a real pebble store in a temp dir.
type fixture struct {
	t    *testing.T
	dir  string
	opts Options
	st   *faultStore
	svc  *Service
	dlv  *recorder
	met  *recMetrics
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = 1024
	}
	met := newRecMetrics()
	if opts.Metrics == nil {
		opts.Metrics = met
	}
	f := &fixture{t: t, dir: t.TempDir(), opts: opts, dlv: &recorder{}, met: met}
	f.open()
	t.Cleanup(f.close)
	return f
}

func (f *fixture) open() {
	f.t.Helper()
	ps, err := pebblestore.Open(f.dir, pebblestore.Options{})
	if err != nil {
		f.t.Fatalf("pebble.Open: %v", err)
	}
	f.st = &faultStore{Store: ps}
	gen, err := ids.NewGenerator(1)
	if err != nil {
		f.t.Fatalf("NewGenerator: %v", err)
	}
	f.svc = New(f.st, f.dlv, gen, f.opts)
	f.dlv.idle = f.svc.fanoutIdle
}

// close stops the service, then the store; safe to call more than once.
func (f *fixture) close() {
	f.t.Helper()
	if f.svc == nil {
		return
	}
	f.svc.Close()
	if err := f.st.Store.Close(); err != nil {
		f.t.Errorf("store Close: %v", err)
	}
	f.svc = nil
}

// restart closes the service and the store and reopens both on the same dir.
func (f *fixture) restart() {
	f.t.Helper()
	f.close()
	f.open()
}

func (f *fixture) user() string {
	f.t.Helper()
	id := ids.NewUserID()
	u := store.User{ID: id, Username: "u" + id, PasswordHash: []byte("x"), CreatedAt: time.Now()}
	if err := f.st.CreateUser(context.Background(), u); err != nil {
		f.t.Fatalf("CreateUser: %v", err)
	}
	return id
}

func (f *fixture) lastSeq(chat string) uint64 {
	f.t.Helper()
	n, err := f.st.LastSeq(context.Background(), chat)
	if err != nil {
		f.t.Fatalf("LastSeq(%s): %v", chat, err)
	}
	return n
}

// history reads the whole chat straight from the store, in pages.
func (f *fixture) history(chat string) []store.Message {
	f.t.Helper()
	var out []store.Message
	// After 0 means "no lower bound" (newest page), so the first page is
	// asked for as the oldest one: Before = Limit+1.
	q := store.HistoryQuery{Before: 201, Limit: 200}
	for {
		page, err := f.st.History(context.Background(), chat, q)
		if err != nil {
			f.t.Fatalf("History(%s): %v", chat, err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		q = store.HistoryQuery{After: page[len(page)-1].Seq, Limit: 200}
	}
}

// send sends a text message and fails the test on error.
func (f *fixture) send(from, to, cmid string) Result {
	f.t.Helper()
	res, err := f.svc.Send(context.Background(), from, Envelope{To: "user:" + to, CMID: cmid, Body: []byte(`"` + cmid + `"`)})
	if err != nil {
		f.t.Fatalf("Send(%s -> %s, %s): %v", from, to, cmid, err)
	}
	return res
}

// expectCode asserts err is a *Error with the wanted code.
func expectCode(t *testing.T, err error, want Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want code %q", want)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %T %v, want *chat.Error", err, err)
	}
	if got := CodeOf(err); got != want {
		t.Fatalf("code = %q (%v), want %q", got, err, want)
	}
	if e.Message == "" || MessageOf(err) != e.Message {
		t.Fatalf("client message %q / MessageOf %q", e.Message, MessageOf(err))
	}
}

// waitFor polls cond until it holds; it fails the test after hangTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// recv receives from ch or fails the test after hangTimeout.
func recv[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hangTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// gate blocks the first AppendMessages call until released, so sends can be
// queued behind it deterministically.
type gate struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	calls   atomic.Int64
}

func newGate() *gate { return &gate{entered: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// hook blocks the first call made through it and delegates later calls,
// numbered from 2, to next (nil: no fault).
func (g *gate) hook(next func(call int64, msgs []store.Message) error) func(int64, []store.Message) error {
	return func(_ int64, msgs []store.Message) error {
		call := g.calls.Add(1)
		if call == 1 {
			close(g.entered)
			<-g.release
			return nil
		}
		if next != nil {
			return next(call, msgs)
		}
		return nil
	}
}

type sendOutcome struct {
	res Result
	err error
}

// sendAsync sends in a goroutine; the outcome arrives on the returned channel.
func (f *fixture) sendAsync(ctx context.Context, from, to, cmid string) <-chan sendOutcome {
	ch := make(chan sendOutcome, 1)
	svc := f.svc
	go func() {
		res, err := svc.Send(ctx, from, Envelope{To: "user:" + to, CMID: cmid, Body: []byte(`"` + cmid + `"`)})
		ch <- sendOutcome{res, err}
	}()
	return ch
}

// queued is how many sends wait in chat's writer queue.
func (f *fixture) queued(chat string) int { return len(f.svc.shardFor(chat).in) }

// sendPayload sends a raw envelope and waits for it, as the Chat hook does
// for one publish.
func sendPayload(ctx context.Context, svc *Service, from string, payload []byte) (Result, Envelope, error) {
	env, wait, err := svc.QueuePayload(ctx, from, payload)
	if err != nil {
		return Result{}, env, err
	}
	res, err := wait()
	return res, env, err
}
