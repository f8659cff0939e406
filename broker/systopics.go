package broker

import (
	"log/slog"
	"math"
	"runtime"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"
)

// sysInterval is mochi's own $SYS interval (defaultSysTopicInterval).
const sysInterval = time.Second

// parkedSysInterval is the SysTopicResendInterval (seconds) that keeps
// mochi's own $SYS ticker from ever firing: the largest whose conversion
// to a time.Duration does not overflow.
const parkedSysInterval = math.MaxInt64 / int64(time.Second)

// sysTopics publishes mochi's $SYS topics in mochi's place. mochi's
// publishSysTopics stores them as retained messages without any hook
// around it, which would race every wildcard SUBSCRIBE on $SYS (see
// retainGate); published here as retained inline publishes, they pass
// through the gate like any other retained message. The topics, values and
// interval are mochi's.
type sysTopics struct {
	srv *mqtt.Server
	log *slog.Logger
	// cl publishes. mochi counts every injected packet as a packet and a
	// message received on the injecting client's server, and $SYS updates
	// are not traffic (mochi never counted its own), so cl belongs to a
	// server that is never started: its counters are the only thing of it
	// cl carries into srv.InjectPacket.
	cl *mqtt.Client
	// tick receives the values each round, as mochi's OnSysInfoTick hooks
	// do (the session store keeps them); nil = no one.
	tick func(*system.Info)

	stop chan struct{}
	done chan struct{}
}

func newSysTopics(srv *mqtt.Server, log *slog.Logger, tick func(*system.Info)) *sysTopics {
	sink := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	return &sysTopics{
		srv: srv, log: log, tick: tick,
		cl:   sink.NewClient(nil, mqtt.LocalListener, "mqchat-sys", true),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// run publishes every interval until close.
func (p *sysTopics) run(interval time.Duration) {
	defer close(p.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.publish()
		}
	}
}

// close stops run and waits for it; run must have been started.
func (p *sysTopics) close() {
	close(p.stop)
	<-p.done
}

// publish is mochi's publishSysTopics, with inline publishes instead of
// direct writes to the retained index. (Server.Publish would inject through
// srv's own inline client, whose counters are srv's.)
func (p *sysTopics) publish() {
	s := p.srv
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	atomic.StoreInt64(&s.Info.MemoryAlloc, int64(m.HeapInuse))
	atomic.StoreInt64(&s.Info.Threads, int64(runtime.NumGoroutine()))
	atomic.StoreInt64(&s.Info.Time, time.Now().Unix())
	atomic.StoreInt64(&s.Info.Uptime, time.Now().Unix()-atomic.LoadInt64(&s.Info.Started))
	atomic.StoreInt64(&s.Info.ClientsTotal, int64(s.Clients.Len()))
	atomic.StoreInt64(&s.Info.ClientsDisconnected, atomic.LoadInt64(&s.Info.ClientsTotal)-atomic.LoadInt64(&s.Info.ClientsConnected))

	info := s.Info.Clone()
	for topic, value := range sysValues(info) {
		err := s.InjectPacket(p.cl, packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true},
			TopicName:   topic,
			Payload:     []byte(value),
		})
		if err != nil {
			p.log.Warn("$SYS publish failed", "topic", topic, "error", err)
		}
	}
	if p.tick != nil {
		p.tick(info)
	}
}

// sysValues are the topics and values of mochi's publishSysTopics.
func sysValues(info *system.Info) map[string]string {
	sys := mqtt.SysPrefix
	i := mqtt.Int64toa
	return map[string]string{
		sys + "/broker/version":              info.Version,
		sys + "/broker/time":                 i(info.Time),
		sys + "/broker/uptime":               i(info.Uptime),
		sys + "/broker/started":              i(info.Started),
		sys + "/broker/load/bytes/received":  i(info.BytesReceived),
		sys + "/broker/load/bytes/sent":      i(info.BytesSent),
		sys + "/broker/clients/connected":    i(info.ClientsConnected),
		sys + "/broker/clients/disconnected": i(info.ClientsDisconnected),
		sys + "/broker/clients/maximum":      i(info.ClientsMaximum),
		sys + "/broker/clients/total":        i(info.ClientsTotal),
		sys + "/broker/packets/received":     i(info.PacketsReceived),
		sys + "/broker/packets/sent":         i(info.PacketsSent),
		sys + "/broker/messages/received":    i(info.MessagesReceived),
		sys + "/broker/messages/sent":        i(info.MessagesSent),
		sys + "/broker/messages/dropped":     i(info.MessagesDropped),
		sys + "/broker/messages/inflight":    i(info.Inflight),
		sys + "/broker/retained":             i(info.Retained),
		sys + "/broker/subscriptions":        i(info.Subscriptions),
		sys + "/broker/system/memory":        i(info.MemoryAlloc),
		sys + "/broker/system/threads":       i(info.Threads),
	}
}
