package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/eclipse/paho.golang/paho"
)

// stormOptions are the flags of the presence-storm scenario.
type stormOptions struct {
	Watchers int
	Groups   int
	Flappers int
	Duration time.Duration // the shared --duration; 20s unless given
	Baseline time.Duration
}

func (s *stormOptions) flags(fs *flag.FlagSet) {
	fs.IntVar(&s.Watchers, "watchers", 200, "users subscribed to the star's presence, each in every one of its groups (presence-storm), 1-10000")
	fs.IntVar(&s.Groups, "groups", 1000, "groups of the star user, made over REST (presence-storm), 1-100000")
	fs.IntVar(&s.Flappers, "flappers", 2, "devices of the star reconnecting in a loop (presence-storm), 1-64")
	fs.DurationVar(&s.Baseline, "baseline", 5*time.Second, "how long unrelated users are measured before the storm (presence-storm), at most 10m")
}

func (s stormOptions) validate(scenario string) error {
	if scenario != "presence-storm" {
		return nil
	}
	var errs []error
	if s.Watchers < 1 || s.Watchers > 10000 {
		errs = append(errs, errors.New("--watchers must be 1-10000"))
	}
	if s.Groups < 1 || s.Groups > 100000 {
		errs = append(errs, errors.New("--groups must be 1-100000"))
	}
	if s.Flappers < 1 || s.Flappers > 64 {
		errs = append(errs, errors.New("--flappers must be 1-64"))
	}
	if s.Duration <= 0 || s.Duration > 10*time.Minute || s.Baseline < 0 || s.Baseline > 10*time.Minute {
		errs = append(errs, errors.New("--duration must be 1ns-10m and --baseline 0-10m"))
	}
	return errors.Join(errs...)
}

// stormReport is what presence-storm measures: an unrelated user's
// CONNECT→SUBACK and an unrelated 1:1 delivery, before and during the storm.
type stormReport struct {
	Watchers          int    `json:"watchers"`
	Groups            int    `json:"groups"`
	Flaps             int64  `json:"flaps"`
	PresenceDelivered int64  `json:"presence_delivered"`
	Baseline          probes `json:"baseline"`
	Storm             probes `json:"storm"`
}

type probes struct {
	Connect  stats `json:"connect"`
	Delivery stats `json:"delivery"`
	Errors   int64 `json:"errors"`
}

func (s *stormReport) print(w io.Writer, r report) {
	fmt.Fprintf(w, "scenario %s on %s %v\n", r.Scenario, r.Target, r.Params)
	fmt.Fprintf(w, "  storm        %d flaps (%d presence changes) in %.1fs, %d presence messages to %d watchers of a user in %d groups\n",
		s.Flaps, 2*s.Flaps, r.ElapsedSec, s.PresenceDelivered, s.Watchers, s.Groups)
	for _, p := range []struct {
		name string
		p    probes
	}{{"baseline", s.Baseline}, {"storm", s.Storm}} {
		fmt.Fprintf(w, "  %-8s     connect→SUBACK %v\n", p.name, p.p.Connect)
		fmt.Fprintf(w, "               1:1 delivery   %v\n", p.p.Delivery)
		if p.p.Errors > 0 {
			fmt.Fprintf(w, "               errors         %d\n", p.p.Errors)
		}
	}
	if r.ServerCPUSec > 0 {
		fmt.Fprintf(w, "  server CPU   %.2fs during the storm\n", r.ServerCPUSec)
	}
}

// presenceStormScenario reproduces a presence storm: a "star" user in
// --groups groups, each also holding all --watchers users, who subscribe
// to its presence; --flappers devices of the star connect and disconnect
// in a loop, so every connect and every disconnect changes its presence.
// Meanwhile, and before it for a baseline, an unrelated user connects and
// subscribes over and over, and an unrelated pair exchanges 1:1 messages
// one at a time; their latencies are what a storm must not hurt.
func presenceStormScenario(ctx context.Context, o options, log *slog.Logger, stderr io.Writer) (report, error) {
	so := o.Storm
	api := newREST(o.HTTP)
	log.Info("registering users", "count", so.Watchers+4)
	users, err := api.registerMany(ctx, o.Prefix, so.Watchers+4)
	if err != nil {
		return report{}, err
	}
	star, prober, from, to, watchers := users[0], users[1], users[2], users[3], users[4:]
	if err := makeStormGroups(ctx, api, star, watchers, so.Groups, log); err != nil {
		return report{}, err
	}

	var c counters
	stop := make(chan struct{})
	go progress(stderr, &c, stop)
	defer close(stop)
	d := newDialer(o.Sources)
	anchor, err := newClient(ctx, d, o.MQTT, identity{ClientID: star.ID + "/anchor", Username: star.ID, Password: star.Token}, &c, nil)
	if err != nil {
		return report{}, err
	}
	defer anchor.close()
	var presenceMsgs atomic.Int64
	ids := make([]identity, len(watchers))
	for i, w := range watchers {
		ids[i] = identity{ClientID: w.ID + "/watch", Username: w.ID, Password: w.Token, Subs: []string{"presence/" + star.ID}}
	}
	log.Info("connecting watchers", "count", len(ids))
	ws, err := connectAll(ctx, d, o.MQTT, ids, &c, func(int) func(*paho.Publish) {
		return func(*paho.Publish) { presenceMsgs.Add(1); c.received.Add(1) }
	})
	if err != nil {
		return report{}, err
	}
	defer closeAll(ws)
	pr, err := newProber(ctx, d, o.MQTT, prober, from, to, &c)
	if err != nil {
		return report{}, err
	}
	defer pr.close()

	rep := &stormReport{Watchers: so.Watchers, Groups: so.Groups}
	if so.Baseline > 0 {
		log.Info("measuring without a storm", "for", so.Baseline)
		rep.Baseline = pr.run(ctx, so.Baseline)
	}

	pid, pidErr := serverPID(o)
	var cpu0 time.Duration
	if pidErr == nil {
		cpu0, pidErr = readCPU(pid)
	}
	log.Info("storm", "flappers", so.Flappers, "for", so.Duration)
	before := presenceMsgs.Load()
	start := time.Now()
	sctx, cancel := context.WithCancel(ctx)
	var flaps atomic.Int64
	var wg sync.WaitGroup
	for i := range so.Flappers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			flapLoop(sctx, d, o.MQTT, identity{ClientID: fmt.Sprintf("%s/flap%d", star.ID, i), Username: star.ID, Password: star.Token}, &flaps, &c)
		}()
	}
	rep.Storm = pr.run(ctx, so.Duration)
	cancel()
	wg.Wait()
	elapsed := time.Since(start)
	rep.Flaps, rep.PresenceDelivered = flaps.Load(), presenceMsgs.Load()-before

	r := report{
		Scenario: o.Scenario, Target: o.TargetName, ElapsedSec: elapsed.Seconds(), Storm: rep, Errors: c.errors.Load(),
		Params:   map[string]any{"watchers": so.Watchers, "groups": so.Groups, "flappers": so.Flappers, "duration": so.Duration.String()},
		Received: rep.PresenceDelivered, Latency: rep.Storm.Delivery,
	}
	if pidErr == nil {
		if cpu1, err := readCPU(pid); err == nil {
			r.ServerCPUSec = (cpu1 - cpu0).Seconds()
		}
	} else {
		log.Warn("server CPU not measured", "error", pidErr)
	}
	return r, nil
}

// makeStormGroups creates n groups owned by star holding every watcher.
func makeStormGroups(ctx context.Context, api *restClient, star account, watchers []account, n int, log *slog.Logger) error {
	members := make([]string, len(watchers))
	for i, w := range watchers {
		members[i] = w.ID
	}
	log.Info("creating groups", "count", n, "members", len(members)+1)
	var made atomic.Int64
	var g errgroup.Group
	g.SetLimit(8)
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			body := map[string]any{"name": fmt.Sprintf("storm %d", i), "members": members}
			if err := api.do(ctx, "POST", "/v1/groups", star.Token, body, nil); err != nil {
				return fmt.Errorf("create group %d: %w", i, err)
			}
			if m := made.Add(1); m%100 == 0 {
				log.Info("groups created", "count", m)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// flapLoop connects and cleanly disconnects id until ctx ends.
func flapLoop(ctx context.Context, d *dialer, addr string, id identity, flaps *atomic.Int64, c *counters) {
	for ctx.Err() == nil {
		conn, err := d.dial(ctx, addr)
		if err != nil {
			c.errors.Add(1)
			continue
		}
		pc := paho.NewClient(paho.ClientConfig{Conn: conn})
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = pc.Connect(cctx, &paho.Connect{ClientID: id.ClientID, KeepAlive: 60, CleanStart: true,
			Username: id.Username, UsernameFlag: true, Password: []byte(id.Password), PasswordFlag: true})
		cancel()
		if err != nil {
			_ = conn.Close()
			if ctx.Err() == nil {
				c.errors.Add(1)
			}
			continue
		}
		_ = pc.Disconnect(&paho.Disconnect{})
		flaps.Add(1)
	}
}

// prober times an unrelated user's connect and an unrelated 1:1 delivery.
type prober struct {
	ctx      context.Context
	d        *dialer
	addr     string
	user     account
	from, to account
	sender   *client
	rcv      *client
	arrived  chan string // cmids reaching the recipient
	c        *counters
	n        int
}

func newProber(ctx context.Context, d *dialer, addr string, user, from, to account, c *counters) (*prober, error) {
	p := &prober{ctx: ctx, d: d, addr: addr, user: user, from: from, to: to, c: c, arrived: make(chan string, 64)}
	var err error
	p.rcv, err = newClient(ctx, d, addr, identity{ClientID: to.ID + "/probe", Username: to.ID, Password: to.Token, Subs: []string{"users/" + to.ID + "/inbox"}}, c,
		func(pk *paho.Publish) {
			var m struct {
				CMID string `json:"cmid"`
			}
			if json.Unmarshal(pk.Payload, &m) == nil {
				select {
				case p.arrived <- m.CMID:
				default:
				}
			}
		})
	if err != nil {
		return nil, err
	}
	p.sender, err = newClient(ctx, d, addr, identity{ClientID: from.ID + "/probe", Username: from.ID, Password: from.Token}, c, nil)
	if err != nil {
		p.rcv.close()
		return nil, err
	}
	return p, nil
}

func (p *prober) close() {
	p.sender.close()
	p.rcv.close()
}

// probeEvery paces the probes: 20 sends a second stay under chatd's
// default limits.send_rate (50/s), whose refusals would be no latency.
const probeEvery = 50 * time.Millisecond

// run probes one connect and one delivery every probeEvery for d.
func (p *prober) run(ctx context.Context, d time.Duration) probes {
	var connects, deliveries []time.Duration
	var errs int64
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	end := time.Now().Add(d)
	for ; time.Now().Before(end) && ctx.Err() == nil; <-tick.C {
		p.n++
		if t, err := p.connect(ctx); err != nil {
			errs++
			p.c.errors.Add(1)
		} else {
			connects = append(connects, t)
		}
		if t, err := p.deliver(ctx); err != nil {
			errs++
			p.c.errors.Add(1)
		} else {
			deliveries = append(deliveries, t)
		}
	}
	return probes{Connect: summarize(connects), Delivery: summarize(deliveries), Errors: errs}
}

// connect times CONNECT→SUBACK of a fresh device of the probe user.
func (p *prober) connect(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	cl, err := newClient(ctx, p.d, p.addr, identity{
		ClientID: fmt.Sprintf("%s/p%d", p.user.ID, p.n), Username: p.user.ID, Password: p.user.Token,
		Subs: []string{"users/" + p.user.ID + "/inbox"},
	}, &counters{}, nil)
	if err != nil {
		return 0, err
	}
	t := time.Since(start)
	cl.close()
	return t, nil
}

// deliver times one 1:1 message from send to arrival.
func (p *prober) deliver(ctx context.Context) (time.Duration, error) {
	cmid := fmt.Sprintf("storm-probe-%d", p.n)
	body, err := json.Marshal(map[string]string{"to": "user:" + p.to.ID, "cmid": cmid, "type": "text", "body": "probe"})
	if err != nil {
		return 0, err
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	p.c.sent.Add(1)
	if err := p.sender.publish(tctx, "users/"+p.from.ID+"/send", body); err != nil {
		return 0, err
	}
	p.c.acked.Add(1)
	for {
		select {
		case got := <-p.arrived:
			if got == cmid {
				return time.Since(start), nil
			}
		case <-tctx.Done():
			return 0, fmt.Errorf("1:1 message %s: %w", cmid, tctx.Err())
		}
	}
}
