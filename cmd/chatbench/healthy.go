package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/time/rate"
)

// Classes of healthy traffic, reported separately.
const (
	classPairs = "pairs"
	classGroup = "group"
	classAll   = "all"
)

// publishTimeout bounds the wait for one healthy PUBACK: a send not
// acknowledged by then is a failure the user would have seen.
const publishTimeout = 10 * time.Second

// healthyLoad is the well-behaved traffic that the isolation and abuse
// scenarios watch while other clients misbehave: 1:1 pairs and one group
// whose members all send, paced, on clients that read promptly. Every
// delivery is a latency sample on a timeline by send time; a delivery that
// never comes is counted lost.
type healthyLoad struct {
	codec   chatCodec
	senders []*client
	topics  []string  // per sender
	class   []string  // per sender: classPairs or classGroup
	want    []int     // per sender: deliveries each of its messages causes
	rates   []float64 // per sender: messages per second
	window  int
	clients []*client
	users   []account

	// startNs is when sending began (UnixNano): timeline offsets count from
	// it. Atomic because receivers read it on paho's goroutines.
	startNs atomic.Int64
	tl      map[string]*timeline // per class, and classAll
	live    recorder             // latencies since the progress line last took them
	c       counters
	lost    int64 // set by finish

	mu      sync.Mutex
	pending map[msgKey]*inFlight
}

type msgKey struct{ sender, n int }

type inFlight struct {
	sent   time.Time
	want   int
	got    []int // receivers that have it
	failed bool  // the publish failed: refused or never acknowledged
}

// newHealthyLoad registers the healthy users, makes their group and
// connects them: pair senders (not subscribed), pair recipients and group
// members (subscribed to their inbox; members also send).
func newHealthyLoad(ctx context.Context, o options, api *restClient, log *slog.Logger) (*healthyLoad, error) {
	p, g := o.Pairs, o.Members
	log.Info("registering healthy users", "pairs", p, "group_members", g)
	users, err := api.registerMany(ctx, o.Prefix+"-h", 2*p+g)
	if err != nil {
		return nil, err
	}
	members := users[2*p:]
	var ids []string
	for _, u := range members[1:] {
		ids = append(ids, u.ID)
	}
	var grp struct {
		GroupID string `json:"group_id"`
	}
	if err := api.do(ctx, "POST", "/v1/groups", members[0].Token, map[string]any{"name": o.Prefix + "-healthy", "members": ids}, &grp); err != nil {
		return nil, fmt.Errorf("create the healthy group: %w", err)
	}
	h := &healthyLoad{
		codec: chatCodec{size: o.Body}, window: o.Window, users: users, pending: map[msgKey]*inFlight{},
		tl: map[string]*timeline{classPairs: {}, classGroup: {}, classAll: {}},
	}
	for i := range p {
		h.codec.to = append(h.codec.to, "user:"+users[p+i].ID)
		h.add(users[i], classPairs, 1, o.PairRate)
	}
	for _, m := range members {
		h.codec.to = append(h.codec.to, "group:"+grp.GroupID)
		h.add(m, classGroup, g-1, o.GroupRate/float64(g))
	}
	// One connection per user: pair senders, pair recipients, members.
	idents := chatIdentities(users[:p], "healthy", false)
	idents = append(idents, chatIdentities(users[p:], "healthy", true)...)
	log.Info("connecting healthy users", "connections", len(idents))
	h.clients, err = connectAll(ctx, newDialer(1), o.MQTT, idents, &h.c, func(i int) func(*paho.Publish) {
		self := -1 // pair recipients never send
		if i >= 2*p {
			self = i - p // a member's sender index; its own copy is not a delivery
		}
		return h.receiver(i, self)
	})
	if err != nil {
		return nil, err
	}
	h.senders = append(slices.Clone(h.clients[:p]), h.clients[2*p:]...)
	return h, nil
}

func (h *healthyLoad) add(u account, class string, want int, rate float64) {
	h.topics = append(h.topics, "users/"+u.ID+"/send")
	h.class = append(h.class, class)
	h.want = append(h.want, want)
	h.rates = append(h.rates, rate)
}

// receiver handles the inbox of receiving client rid, whose own sends (as
// sender self, -1 for none) come back to it and are not counted.
func (h *healthyLoad) receiver(rid, self int) func(*paho.Publish) {
	return func(p *paho.Publish) {
		now := time.Now()
		sender, n, ts, ok := h.codec.decode(p.Payload)
		if !ok || sender == self || sender < 0 || sender >= len(h.class) {
			return // an event, a system message, an attacker's message
		}
		h.mu.Lock()
		f := h.pending[msgKey{sender, n}]
		if f == nil || slices.Contains(f.got, rid) {
			h.mu.Unlock()
			h.c.dups.Add(1)
			return
		}
		if f.got = append(f.got, rid); len(f.got) == f.want {
			delete(h.pending, msgKey{sender, n})
		}
		h.mu.Unlock()
		sent := time.Unix(0, ts)
		h.record(h.class[sender], sent.Sub(h.start()), now.Sub(sent))
		h.live.add(now.Sub(sent))
		h.c.received.Add(1)
	}
}

func (h *healthyLoad) start() time.Time { return time.Unix(0, h.startNs.Load()) }

// since is the offset of now on the timelines.
func (h *healthyLoad) since() time.Duration { return time.Since(h.start()) }

func (h *healthyLoad) record(class string, at, lat time.Duration) {
	h.tl[class].add(at, lat)
	h.tl[classAll].add(at, lat)
}

// run paces every sender until ctx ends; each publish waits for its PUBACK
// under runCtx (bounded by publishTimeout), so stopping the senders does
// not turn sends in flight into failures. The returned func waits for the
// senders to finish.
func (h *healthyLoad) run(ctx, runCtx context.Context) (wait func()) {
	h.startNs.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	for s := range h.senders {
		lim := rate.NewLimiter(rate.Limit(h.rates[s]), 1)
		// Senders start spread over one period, so that a group whose
		// members all send at 1/s does not send in bursts of all of them.
		period := time.Duration(float64(time.Second) / h.rates[s])
		nth, of := 0, 0 // s is the nth sender of its class, which has of senders
		for i, c := range h.class {
			if c == h.class[s] {
				if i < s {
					nth++
				}
				of++
			}
		}
		first := time.Now().Add(time.Duration(int64(period) * int64(nth) / int64(of)))
		var mu sync.Mutex
		next := 0
		for range max(h.window, 1) {
			wg.Go(func() {
				var buf []byte
				if !sleepCtx(ctx, time.Until(first)) {
					return
				}
				for lim.Wait(ctx) == nil {
					mu.Lock()
					n := next
					next++
					mu.Unlock()
					now := time.Now()
					k := msgKey{s, n}
					h.mu.Lock()
					h.pending[k] = &inFlight{sent: now, want: h.want[s]}
					h.mu.Unlock()
					buf = h.codec.encode(buf, s, n, now.UnixNano())
					h.c.sent.Add(1)
					pctx, cancel := context.WithTimeout(runCtx, publishTimeout)
					err := h.senders[s].publish(pctx, h.topics[s], buf)
					cancel()
					if err != nil {
						h.c.errors.Add(1)
						h.mu.Lock()
						if f := h.pending[k]; f != nil {
							f.failed = true
						}
						h.mu.Unlock()
						continue
					}
					h.c.acked.Add(1)
				}
			})
		}
	}
	return wg.Wait
}

// outstanding counts deliveries still expected.
func (h *healthyLoad) outstanding() (n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range h.pending {
		if !f.failed || len(f.got) > 0 {
			n += f.want - len(f.got)
		}
	}
	return n
}

// finish waits up to drain for deliveries still on their way, then counts
// the rest lost. Each lost delivery becomes a sample of the time it was
// waited for (a lower bound), so messages that never arrive cannot make a
// run look fast. A send that failed and reached nobody is a send error
// (counted in c.errors), not a loss.
func (h *healthyLoad) finish(ctx context.Context, drain time.Duration) {
	deadline := time.NewTimer(drain)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond) // polling a count, not timing
	defer tick.Stop()
wait:
	for h.outstanding() > 0 {
		select {
		case <-ctx.Done():
			break wait
		case <-deadline.C:
			break wait
		case <-tick.C:
		}
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, f := range h.pending {
		if f.failed && len(f.got) == 0 {
			continue
		}
		for range f.want - len(f.got) {
			h.record(h.class[k.sender], f.sent.Sub(h.start()), now.Sub(f.sent))
			h.lost++
		}
	}
}

// classStats summarises each class over messages sent in [from, to).
func (h *healthyLoad) classStats(from, to time.Duration) classStats {
	return classStats{
		Pairs: h.tl[classPairs].between(from, to),
		Group: h.tl[classGroup].between(from, to),
		All:   h.tl[classAll].between(from, to),
	}
}

// classStats are latencies per class of healthy traffic.
type classStats struct {
	Pairs stats `json:"pairs"`
	Group stats `json:"group"`
	All   stats `json:"all"`
}

func (h *healthyLoad) close() { closeAll(h.clients) }
