package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/time/rate"
)

// codec puts (sender, message number, send time) into a payload of the
// configured size and gets them back out on the recipient.
type codec interface {
	encode(buf []byte, sender, n int, ts int64) []byte
	decode(payload []byte) (sender, n int, ts int64, ok bool)
}

// rawCodec is for plain topics: a 16-byte header, then padding.
type rawCodec struct{ size int }

func (c rawCodec) encode(buf []byte, sender, n int, ts int64) []byte {
	buf = binary.BigEndian.AppendUint64(buf[:0], uint64(ts))
	buf = binary.BigEndian.AppendUint32(buf, uint32(sender))
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	for len(buf) < c.size {
		buf = append(buf, 'x')
	}
	return buf
}

func (rawCodec) decode(p []byte) (int, int, int64, bool) {
	if len(p) < 16 {
		return 0, 0, 0, false
	}
	return int(binary.BigEndian.Uint32(p[8:])), int(binary.BigEndian.Uint32(p[12:])), int64(binary.BigEndian.Uint64(p)), true
}

// chatCodec writes send envelopes whose cmid names the message and whose
// body (a JSON string of the configured size) starts with the send time.
type chatCodec struct {
	to   []string // per sender: "user:{id}" or "group:{id}"
	size int
}

func (c chatCodec) encode(buf []byte, sender, n int, ts int64) []byte {
	buf = append(buf[:0], `{"to":"`...)
	buf = append(buf, c.to[sender]...)
	buf = append(buf, `","cmid":"c`...)
	buf = strconv.AppendInt(buf, int64(sender), 10)
	buf = append(buf, '-')
	buf = strconv.AppendInt(buf, int64(n), 10)
	buf = append(buf, `","body":"t`...)
	start := len(buf) - 1
	buf = strconv.AppendInt(buf, ts, 10)
	buf = append(buf, ';')
	for len(buf)-start < c.size {
		buf = append(buf, 'x')
	}
	return append(buf, `"}`...)
}

// decode reads a delivered message without a full JSON decode so that the
// load generator's own CPU stays small next to the server's.
func (chatCodec) decode(p []byte) (int, int, int64, bool) {
	cm := fieldAfter(p, `"cmid":"c`)
	body := fieldAfter(p, `"body":"t`)
	if cm == nil || body == nil {
		return 0, 0, 0, false
	}
	s, rest, ok := bytes.Cut(cm, []byte("-"))
	if !ok {
		return 0, 0, 0, false
	}
	nEnd := bytes.IndexByte(rest, '"')
	tsEnd := bytes.IndexByte(body, ';')
	if nEnd < 0 || tsEnd < 0 {
		return 0, 0, 0, false
	}
	sender, err1 := strconv.Atoi(string(s))
	n, err2 := strconv.Atoi(string(rest[:nEnd]))
	ts, err3 := strconv.ParseInt(string(body[:tsEnd]), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, 0, false
	}
	return sender, n, ts, true
}

func fieldAfter(p []byte, prefix string) []byte {
	i := bytes.Index(p, []byte(prefix))
	if i < 0 {
		return nil
	}
	return p[i+len(prefix):]
}

// traffic runs a bounded send phase and counts what the recipients get.
type traffic struct {
	senders    []*client
	topics     []string // per sender
	perSender  int
	window     int
	rate       float64       // messages per second over all senders; 0 = unpaced
	sendFor    time.Duration // no send starts after this; 0 = until perSender are sent
	recipients int           // deliveries each message should cause
	codec      codec
	drain      time.Duration // wait for deliveries after the last send

	c                    counters
	lat, puback          recorder
	arrivals             []atomic.Int32
	sentAt, doneAt       []atomic.Int64
	lastRecv, sendsEnded atomic.Int64
	lastSend, lastAck    atomic.Int64 // unix ns of the latest send and PUBACK

	// started and ended bound the measured window once run returns: from
	// the first send to the last delivery or PUBACK, whichever is later.
	started, ended time.Time
}

// saturatedBelow: a paced run whose sends kept up with less than this
// share of the offered rate did not apply the load it names (every send of
// the window waited on a PUBACK, or the load generator itself fell behind),
// and says so. Deliveries that fall behind the sends are not this: they
// show as latency.
const saturatedBelow = 0.95

// storeMax raises a to v unless it is already later.
func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

func (t *traffic) init(senders int) {
	total := senders * t.perSender
	t.arrivals = make([]atomic.Int32, total)
	t.sentAt = make([]atomic.Int64, total)
	t.doneAt = make([]atomic.Int64, total)
}

// receiver returns the message handler of one recipient.
func (t *traffic) receiver() func(*paho.Publish) {
	var mu sync.Mutex
	seen := make([]uint64, (len(t.arrivals)+63)/64)
	return func(p *paho.Publish) {
		now := time.Now().UnixNano()
		sender, n, ts, ok := t.codec.decode(p.Payload)
		if !ok || n < 0 || n >= t.perSender || sender < 0 || sender*t.perSender+n >= len(t.arrivals) {
			return // not ours (e.g. an event)
		}
		key := sender*t.perSender + n
		mu.Lock()
		dup := seen[key/64]&(1<<(key%64)) != 0
		seen[key/64] |= 1 << (key % 64)
		mu.Unlock()
		if dup {
			t.c.dups.Add(1)
			return
		}
		t.lat.add(time.Duration(now - ts))
		t.c.received.Add(1)
		t.lastRecv.Store(now)
		if int(t.arrivals[key].Add(1)) == t.recipients {
			t.doneAt[key].Store(now)
		}
	}
}

func (t *traffic) run(ctx context.Context, progressOut io.Writer) report {
	stop := make(chan struct{})
	go progress(progressOut, &t.c, stop)
	defer close(stop)

	start := time.Now()
	var wg sync.WaitGroup
	for s, cl := range t.senders {
		var next atomic.Int64
		var lim *rate.Limiter
		if t.rate > 0 {
			lim = rate.NewLimiter(rate.Limit(t.rate/float64(len(t.senders))), 1)
		}
		for range max(t.window, 1) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var buf []byte
				for ctx.Err() == nil {
					if t.sendFor > 0 && time.Since(start) >= t.sendFor {
						return
					}
					n := int(next.Add(1) - 1)
					if n >= t.perSender {
						return
					}
					if lim != nil && lim.Wait(ctx) != nil {
						return
					}
					key := s*t.perSender + n
					ts := time.Now()
					t.sentAt[key].Store(ts.UnixNano())
					storeMax(&t.lastSend, ts.UnixNano())
					buf = t.codec.encode(buf, s, n, ts.UnixNano())
					t.c.sent.Add(1)
					pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					err := cl.publish(pctx, t.topics[s], buf)
					cancel()
					if err != nil {
						t.c.errors.Add(1)
						continue
					}
					acked := time.Now()
					t.puback.add(acked.Sub(ts))
					storeMax(&t.lastAck, acked.UnixNano())
					t.c.acked.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	sendEnd := time.Now()
	deadline := time.NewTimer(t.drain)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond) // polling counters, not timing
	defer tick.Stop()
wait:
	for t.c.received.Load() < t.c.acked.Load()*int64(t.recipients) {
		select {
		case <-ctx.Done():
			break wait
		case <-deadline.C:
			break wait
		case <-tick.C:
		}
	}
	end := time.Unix(0, t.lastRecv.Load())
	if t.lastRecv.Load() == 0 {
		end = time.Now()
	}
	elapsed := end.Sub(start)
	t.started, t.ended = start, end
	if la := time.Unix(0, t.lastAck.Load()); t.lastAck.Load() != 0 && la.After(end) {
		t.ended = la
	}
	var last []time.Duration
	for i := range t.doneAt {
		if d := t.doneAt[i].Load(); d != 0 {
			last = append(last, time.Duration(d-t.sentAt[i].Load()))
		}
	}
	pb := t.puback.stats()
	lm := summarize(last)
	r := report{
		Sent: t.c.sent.Load(), Acked: t.c.acked.Load(),
		Expected: t.c.acked.Load() * int64(t.recipients), Received: t.c.received.Load(),
		Duplicates: t.c.dups.Load(), Errors: t.c.errors.Load(), Reconnects: t.c.reconnects.Load(),
		ElapsedSec: elapsed.Seconds(), Throughput: float64(t.c.received.Load()) / elapsed.Seconds(),
		SendsPerSec: float64(t.c.acked.Load()) / sendEnd.Sub(start).Seconds(),
		Latency:     t.lat.stats(), Puback: &pb,
	}
	if t.recipients > 1 {
		r.LastMember = &lm
	}
	if t.rate > 0 {
		t.paced(&r, start)
	}
	if lost := r.Expected - r.Received; lost > 0 {
		r.Errors += lost
		fmt.Fprintf(progressOut, "%d deliveries missing when the run ended\n", lost)
	}
	return r
}

// paced fills in what a paced run achieved against what it offered. The
// send rate is over the sends' own schedule: a sender paced at r sends its
// n messages at 0, 1/r, …, (n-1)/r, so n sends span (n-1)/r plus one
// period. Latency is only measured from the moment a message is actually
// sent, so a run that fell behind its schedule would show good latency at
// a load it never applied: such a run is flagged saturated.
func (t *traffic) paced(r *report, start time.Time) {
	r.OfferedRate = t.rate
	period := float64(len(t.senders)) / t.rate
	if last := t.lastSend.Load(); last != 0 {
		span := time.Unix(0, last).Sub(start).Seconds() + period
		r.SendRate = float64(r.Sent) / span
	}
	r.Saturated = r.SendRate < saturatedBelow*t.rate
}
