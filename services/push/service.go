package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mqchat/mqchat/store"
)

// Devices is where push tokens live (store.Devices).
type Devices interface {
	Devices(ctx context.Context, uid string) ([]store.Device, error)
	DeletePushToken(ctx context.Context, uid, deviceID, token string) (bool, error)
}

// Cursors gives the unread count a push carries (store.Cursors); optional.
type Cursors interface {
	ChatState(ctx context.Context, uid, chat string) (store.ChatState, error)
}

// Users names the sender in the notification title (store.Users); optional.
type Users interface {
	UserByID(ctx context.Context, id string) (store.User, error)
}

// Metrics receives the push pipeline's observations; every method must be
// cheap (Enqueue calls them on the fan-out and broker paths).
type Metrics interface {
	ObservePushQueued()
	ObservePushCollapsed()
	ObservePushDropped()
	ObservePushSent(devices int)
	ObservePushFailed(reason string)
	ObservePushTokenRemoved()
	ObservePushLatency(d time.Duration)
	// ObservePushSkipped counts a queued push not sent because, by the time
	// a worker took it, a device of the user had received or read the
	// message.
	ObservePushSkipped()
}

// Options configures a Service.
type Options struct {
	Workers   int // default 4
	QueueSize int // pending (user, chat) jobs; default 10000
	// MaxAttempts bounds sends of one push to one device, the first
	// included (default 5); Backoff doubles after each transient failure
	// up to MaxBackoff (defaults 1s and 1m).
	MaxAttempts int
	Backoff     time.Duration
	MaxBackoff  time.Duration
	// SendTimeout bounds one provider call; default 30s.
	SendTimeout time.Duration
	IncludeBody bool
	Cursors     Cursors
	Users       Users
	Logger      *slog.Logger
	Metrics     Metrics
}

// Service is the bounded push queue and its workers. Enqueue never blocks:
// a job for a (user, chat) already waiting absorbs the newer message, and
// a full queue drops the job and counts it.
type Service struct {
	dev  Devices
	prov Provider
	opts Options

	mu      sync.Mutex
	pending map[jobKey]*job
	ready   chan jobKey // keys of pending, in arrival order; cap QueueSize
	closed  bool

	ctx    context.Context // cancelled by Close: stops retries and sends
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type jobKey struct{ uid, chat string }

type job struct {
	msg   store.Message // newest message of the chat not yet received
	count uint64        // messages collapsed into the job
}

// New starts the workers; Close stops them.
func New(dev Devices, prov Provider, opts Options) *Service {
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 10000
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.Backoff <= 0 {
		opts.Backoff = time.Second
	}
	if opts.MaxBackoff < opts.Backoff {
		opts.MaxBackoff = max(opts.Backoff, time.Minute)
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = nopMetrics{}
	}
	s := &Service{
		dev: dev, prov: prov, opts: opts,
		pending: make(map[jobKey]*job), ready: make(chan jobKey, opts.QueueSize),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for range opts.Workers {
		s.wg.Add(1)
		go s.work()
	}
	return s
}

// Enqueue queues a push of m to uid, or folds m into the push already
// waiting for (uid, m.Chat). It is O(1) and never blocks.
func (s *Service) Enqueue(uid string, m store.Message) {
	k := jobKey{uid, m.Chat}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if j := s.pending[k]; j != nil {
		if m.Seq > j.msg.Seq {
			j.msg = m
		}
		j.count++
		s.mu.Unlock()
		s.opts.Metrics.ObservePushCollapsed()
		return
	}
	select {
	case s.ready <- k:
		s.pending[k] = &job{msg: m, count: 1}
		s.mu.Unlock()
		s.opts.Metrics.ObservePushQueued()
	default:
		s.mu.Unlock()
		s.opts.Metrics.ObservePushDropped()
	}
}

// Depth is the number of pushes waiting for a worker.
func (s *Service) Depth() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Close stops the workers: sends in progress are cancelled and waiting
// pushes are dropped (the messages stay stored; apps sync on next open).
func (s *Service) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	left := len(s.pending)
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	if left > 0 {
		s.opts.Logger.Info("push queue closed with pushes waiting", "dropped", left)
	}
}

func (s *Service) work() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case k := <-s.ready:
			s.mu.Lock()
			j := s.pending[k]
			delete(s.pending, k)
			s.mu.Unlock()
			if j != nil {
				s.push(k.uid, j)
			}
		}
	}
}

// push sends one job to every device of the user that has a token,
// retrying transient failures per device with exponential backoff.
func (s *Service) push(uid string, j *job) {
	ctx := s.ctx
	st, known := s.chatState(ctx, uid, j.msg.Chat)
	if known && (st.DeliveredSeq >= j.msg.Seq || st.ReadSeq >= j.msg.Seq) {
		// A device came back and acknowledged (or the user read the chat
		// elsewhere) while the push waited in the queue: it is no longer
		// news to anyone.
		s.opts.Logger.Debug("push: already delivered", "user", uid, "chat", j.msg.Chat, "seq", j.msg.Seq)
		s.opts.Metrics.ObservePushSkipped()
		return
	}
	lctx, cancel := context.WithTimeout(ctx, s.opts.SendTimeout)
	devs, err := s.dev.Devices(lctx, uid)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.opts.Logger.Error("push: list devices", "user", uid, "error", err)
			s.opts.Metrics.ObservePushFailed("store")
		}
		return
	}
	var targets []Target
	for _, d := range devs {
		if d.PushToken != "" {
			targets = append(targets, Target{DeviceID: d.DeviceID, Platform: d.Platform, Token: d.PushToken})
		}
	}
	if len(targets) == 0 {
		s.opts.Logger.Debug("push: no device with a push token", "user", uid, "chat", j.msg.Chat)
		s.opts.Metrics.ObservePushFailed("no_devices")
		return
	}
	n := s.notification(ctx, uid, j, st, known)
	backoff := s.opts.Backoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		sctx, cancel := context.WithTimeout(ctx, s.opts.SendTimeout)
		errs := s.prov.Send(sctx, n, targets)
		cancel()
		s.opts.Metrics.ObservePushLatency(time.Since(start))
		if len(errs) != len(targets) {
			errs = fill(errs, len(targets))
		}
		var retry []Target
		var last *SendError
		sent := 0
		for i, t := range targets {
			if errs[i] == nil {
				sent++
				continue
			}
			se := classify(errs[i])
			switch {
			case se.Kind == DeadToken:
				s.removeToken(uid, t, se)
			case se.Kind == Transient && attempt < s.opts.MaxAttempts && ctx.Err() == nil:
				retry, last = append(retry, t), se
				continue
			default:
				s.opts.Logger.Warn("push failed", "user", uid, "device", t.DeviceID, "reason", se.Reason, "attempts", attempt, "error", se.Err)
			}
			s.opts.Metrics.ObservePushFailed(se.Reason)
		}
		if sent > 0 {
			s.opts.Metrics.ObservePushSent(sent)
		}
		if len(retry) == 0 {
			return
		}
		s.opts.Logger.Debug("push: transient failure, retrying", "user", uid, "devices", len(retry), "reason", last.Reason, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			for range retry {
				s.opts.Metrics.ObservePushFailed("shutdown")
			}
			return
		}
		backoff = min(2*backoff, s.opts.MaxBackoff)
		targets = retry
	}
}

func (s *Service) removeToken(uid string, t Target, se *SendError) {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.SendTimeout)
	defer cancel()
	removed, err := s.dev.DeletePushToken(ctx, uid, t.DeviceID, t.Token)
	if err != nil {
		s.opts.Logger.Error("push: delete dead token", "user", uid, "device", t.DeviceID, "error", err)
		return
	}
	if removed {
		s.opts.Logger.Info("push: token removed", "user", uid, "device", t.DeviceID, "reason", se.Reason)
		s.opts.Metrics.ObservePushTokenRemoved()
	}
}

// chatState reads uid's cursors of chat; known is false when there is no
// entry or no cursor store (the push then goes out as queued).
func (s *Service) chatState(ctx context.Context, uid, chat string) (st store.ChatState, known bool) {
	if s.opts.Cursors == nil {
		return store.ChatState{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.SendTimeout)
	defer cancel()
	st, err := s.opts.Cursors.ChatState(ctx, uid, chat)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
			s.opts.Logger.Warn("push: read cursors", "user", uid, "chat", chat, "error", err)
		}
		return store.ChatState{}, false
	}
	return st, true
}

// notification renders a job. Message text goes out only with IncludeBody:
// end-to-end encrypted bodies must never leave in a push.
func (s *Service) notification(ctx context.Context, uid string, j *job, st store.ChatState, known bool) Notification {
	m := j.msg
	n := Notification{UserID: uid, Chat: m.Chat, Seq: m.Seq, From: m.From, Unread: j.count, Title: m.From}
	if known && st.ReadSeq < m.Seq {
		n.Unread = m.Seq - st.ReadSeq
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.SendTimeout)
	defer cancel()
	if s.opts.Users != nil {
		if u, err := s.opts.Users.UserByID(ctx, m.From); err == nil {
			n.Title = u.Username
		}
	}
	switch text, ok := bodyText(m); {
	case n.Unread > 1:
		n.Body = fmt.Sprintf("%d new messages", n.Unread)
	case attachmentLabel(m.Type) != "":
		n.Body = attachmentText(m, s.opts.IncludeBody)
	case ok && s.opts.IncludeBody:
		n.Body = text
	default:
		n.Body = "New message"
	}
	return n
}

// fill pads or cuts a provider's answer to one error per target, so a
// provider bug shows as failures rather than a panic.
func fill(errs []error, n int) []error {
	out := make([]error, n)
	for i := range out {
		if i < len(errs) {
			out[i] = errs[i]
		} else {
			out[i] = &SendError{Kind: Permanent, Reason: "provider", Err: errors.New("no result for device")}
		}
	}
	return out
}

type nopMetrics struct{}

func (nopMetrics) ObservePushQueued()               {}
func (nopMetrics) ObservePushCollapsed()            {}
func (nopMetrics) ObservePushDropped()              {}
func (nopMetrics) ObservePushSent(int)              {}
func (nopMetrics) ObservePushFailed(string)         {}
func (nopMetrics) ObservePushTokenRemoved()         {}
func (nopMetrics) ObservePushLatency(time.Duration) {}
func (nopMetrics) ObservePushSkipped()              {}
