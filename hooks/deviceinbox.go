package hooks

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// DeviceReplayer hands a device its pending device messages, oldest first,
// until none is left or publish returns false (services/devicemsg).
type DeviceReplayer interface {
	Replay(ctx context.Context, uid, device string, publish func(payload []byte) bool) error
}

// DeviceInboxOptions configures the DeviceInbox hook.
type DeviceInboxOptions struct {
	Replayer DeviceReplayer
	Server   *mqtt.Server
	Logger   *slog.Logger
	// MaxInflight is the broker's inflight cap per client
	// (mqtt.max_inflight); a replay keeps the client below it, since
	// mochi drops a QoS 1 publish past it. Default 1024.
	MaxInflight int
	// Timeout bounds one replay; what is left then comes with the next
	// subscribe. Default 2 minutes.
	Timeout time.Duration
}

// DeviceInbox publishes a device's pending device messages when it
// subscribes to its device inbox (or resumes a session holding that
// subscription): messages sent while it was offline wait in the store,
// not in a broker session.
//
// A replay runs on a goroutine of its own, at most one per connection at a
// time (a subscribe during one makes it run again), so neither the
// client's read loop nor any shared goroutine waits for the store or for a
// slow client. It publishes through the broker, so the device's PUBACKs
// reach the Delivery hook like those of live messages.
type DeviceInbox struct {
	mqtt.HookBase
	opts DeviceInboxOptions

	mu      sync.Mutex
	running map[*mqtt.Client]*replayRun // a connection → its replay
	wg      sync.WaitGroup
}

type replayRun struct{ again bool }

// NewDeviceInbox returns the hook.
func NewDeviceInbox(opts DeviceInboxOptions) *DeviceInbox {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = 1024
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Minute
	}
	return &DeviceInbox{opts: opts, running: make(map[*mqtt.Client]*replayRun)}
}

func (h *DeviceInbox) ID() string { return "mqchat-device-inbox" }

func (h *DeviceInbox) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnSubscribed, mqtt.OnSessionEstablished}, []byte{b})
}

// OnSubscribed starts a replay when the client subscribed to its own
// device inbox, or to users/{uid}/# (which carries it too).
func (h *DeviceInbox) OnSubscribed(cl *mqtt.Client, pk packets.Packet, reasonCodes []byte) {
	uid, device, ok := h.device(cl)
	if !ok {
		return
	}
	for i, sub := range pk.Filters {
		if carriesDeviceInbox(uid, device, sub.Filter) && i < len(reasonCodes) && reasonCodes[i] < packets.ErrUnspecifiedError.Code {
			h.start(cl, uid, device)
			return
		}
	}
}

// OnSessionEstablished starts a replay for a resumed session that holds
// the device inbox subscription: the device does not subscribe again.
func (h *DeviceInbox) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	uid, device, ok := h.device(cl)
	if !ok {
		return
	}
	for _, f := range []string{DeviceInboxTopic(uid, device), "users/" + uid + "/#"} {
		if _, ok := cl.State.Subscriptions.Get(f); ok {
			h.start(cl, uid, device)
			return
		}
	}
}

// carriesDeviceInbox reports whether filter, granted to the client
// {uid}/{device}, delivers its device inbox: the topic itself or the
// user's whole subtree (the ACL refuses every other filter reaching it).
func carriesDeviceInbox(uid, device, filter string) bool {
	return filter == DeviceInboxTopic(uid, device) || filter == "users/"+uid+"/#"
}

func (h *DeviceInbox) device(cl *mqtt.Client) (uid, device string, ok bool) {
	if cl.Net.Inline || h.opts.Replayer == nil {
		return "", "", false
	}
	uid = string(cl.Properties.Username)
	if uid == "" {
		return "", "", false
	}
	device, ok = clientDevice(uid, cl.ID)
	return uid, device, ok
}

func (h *DeviceInbox) start(cl *mqtt.Client, uid, device string) {
	h.mu.Lock()
	if r := h.running[cl]; r != nil {
		r.again = true // the running replay reads the store once more
		h.mu.Unlock()
		return
	}
	r := &replayRun{}
	h.running[cl] = r
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		for {
			h.replay(cl, uid, device)
			h.mu.Lock()
			if !r.again || cl.Closed() {
				delete(h.running, cl)
				h.mu.Unlock()
				return
			}
			r.again = false
			h.mu.Unlock()
		}
	}()
}

// roomPoll is how often a replay looks whether a client that has its
// inflight window full has acknowledged some.
const roomPoll = 20 * time.Millisecond

func (h *DeviceInbox) replay(cl *mqtt.Client, uid, device string) {
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.Timeout)
	defer cancel()
	topic := DeviceInboxTopic(uid, device)
	// Half the window: live messages and chat deliveries need room too.
	limit := max(h.opts.MaxInflight/2, 1)
	publish := func(payload []byte) bool {
		for cl.State.Inflight.Len() >= limit {
			if cl.Closed() {
				return false
			}
			select {
			case <-ctx.Done():
				return false
			case <-time.After(roomPoll):
			}
		}
		if cl.Closed() {
			return false
		}
		if err := h.opts.Server.Publish(topic, payload, false, 1); err != nil {
			h.opts.Logger.Warn("replay device message", "client", cl.ID, "error", err)
			return false
		}
		return true
	}
	if err := h.opts.Replayer.Replay(ctx, uid, device, publish); err != nil {
		h.opts.Logger.Warn("replay device messages", "client", cl.ID, "error", err)
	}
}

// Wait returns once every replay has ended (shutdown, tests).
func (h *DeviceInbox) Wait() { h.wg.Wait() }
