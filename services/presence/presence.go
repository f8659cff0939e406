// Package presence keeps each user's aggregate presence: online while any of
// its devices is connected, offline once the last one left and a grace
// period passed without a device coming back. In a cluster the devices
// counted are this node's own plus the counts other nodes report for the
// user (SetRemote), so every node publishes the same aggregate. Every
// change of the aggregate is handed to a Publisher, which makes it the
// retained message on presence/{uid}. Publishing happens on worker goroutines, never under the
// service's lock, so connects, disconnects and lookups of other users never
// wait for one user's fan-out to its watchers.
package presence

import (
	"encoding/json"
	"log/slog"
	"sync"
	"time"
)

// Status values of a View.
const (
	StatusOnline  = "online"
	StatusOffline = "offline"
)

// View is the aggregate published on presence/{uid} and served over REST.
type View struct {
	Status string `json:"status"`
	// LastSeen is when the user's last device left (RFC 3339); set on
	// offline views, omitted when unknown and on online views.
	LastSeen string `json:"last_seen,omitempty"`
	Devices  int    `json:"devices"`
}

// Cause is why a device's connection ended.
type Cause string

const (
	// CauseWill is a connection lost without DISCONNECT (the case the
	// client's will covers), or a DISCONNECT asking for the will.
	CauseWill Cause = "will"
	// CauseKeepAlive is a connection closed by the server after 1.5 times
	// the keep-alive without traffic.
	CauseKeepAlive Cause = "keep-alive"
	// CauseDisconnect is a clean DISCONNECT.
	CauseDisconnect Cause = "disconnect"
	// CauseTakeover is a connection replaced by a new one with the same
	// client id on this node; it never changes presence.
	CauseTakeover Cause = "takeover"
	// CauseMoved is a connection closed because the same client id
	// connected on another node. It counts the device out like a
	// disconnect: the other node counts it in, so watchers see at most a
	// dip of the device count, never an offline inside the grace period.
	CauseMoved Cause = "moved"
)

// Publisher makes payload the retained presence message of uid.
type Publisher interface {
	PublishPresence(uid string, payload []byte) error
}

// Clock is the time source; tests inject a manual one.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc.
type Timer interface{ Stop() bool }

// Metrics receives presence observations.
type Metrics interface {
	ObservePresenceTransition(cause string)
	// ObservePresenceCoalesced counts a change replaced by a newer one of
	// the same user before it was published.
	ObservePresenceCoalesced()
}

// LocalObserver is told this node's own device count of a user after every
// change of it (connect, disconnect, takeover that changes the count), in
// order per user. It is called with the service's lock held, so it must not
// block (the cluster bus does a buffered NATS publish).
type LocalObserver interface{ LocalDevices(uid string, devices int) }

// Options configures the service.
type Options struct {
	// Grace is how long a user stays online after its last device left.
	Grace time.Duration
	// Workers publish aggregates (default 4). A user with many watchers
	// occupies one for its fan-out; the others keep publishing.
	Workers int
	// PublishInterval is the least time between two publishes of one user
	// (0 = none); changes within it collapse into the newest, published
	// when it ends.
	PublishInterval time.Duration
	Clock           Clock // nil = real time
	Logger          *slog.Logger
	Metrics         Metrics
	// Local hears of every change of this node's device count of a user;
	// nil in single-node mode.
	Local LocalObserver
}

// DefaultWorkers is the number of publishing goroutines when
// Options.Workers is 0.
const DefaultWorkers = 4

// Service owns every user's presence state. It is safe for concurrent use.
type Service struct {
	out  *queue
	opts Options

	mu      sync.Mutex
	users   map[string]*user
	gen     uint64 // last connection generation handed out
	devices int    // connected devices of this node, all users
	online  int    // users whose published status is online
	closed  bool
	// remote holds the device counts other nodes reported, node → user →
	// count (> 0), so DropNode finds a node's users without a scan of all
	// users. Empty in single-node mode.
	remote map[string]map[string]int
}

type user struct {
	devices  map[string]uint64 // client id → connection generation, this node's
	remote   int               // devices on other nodes: sum of Service.remote[*][uid]
	view     View              // last published or restored aggregate
	known    bool              // view is set
	lastSeen time.Time
	timer    Timer  // grace period running
	timerGen uint64 // identifies the current timer; stale ones find it changed
}

// New returns a service publishing through pub; Close stops it.
func New(pub Publisher, opts Options) *Service {
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	return &Service{out: newQueue(pub, opts), opts: opts, users: make(map[string]*user), remote: make(map[string]map[string]int)}
}

// total is the user's device count across the cluster.
func (u *user) total() int { return len(u.devices) + u.remote }

// Connected records that clientID, a device of uid, is connected, and
// returns the connection's generation, which Disconnected must be given.
// A client id already present (a session takeover) is replaced: the old
// connection's late Disconnected then finds a newer generation and is
// ignored.
func (s *Service) Connected(uid, clientID string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0
	}
	u := s.user(uid)
	s.gen++
	_, known := u.devices[clientID]
	u.devices[clientID] = s.gen
	if !known {
		s.devices++
		s.localChanged(uid, u)
	}
	s.stopTimer(u)
	s.publish(uid, u, View{Status: StatusOnline, Devices: u.total()})
	return s.gen
}

// Disconnected records that the connection gen of clientID ended. When it
// was uid's last device, the user stays online for the grace period and
// goes offline only if no device connects within it.
func (s *Service) Disconnected(uid, clientID string, gen uint64, cause Cause) {
	if s.opts.Metrics != nil {
		s.opts.Metrics.ObservePresenceTransition(string(cause))
	}
	if cause == CauseTakeover {
		// The new connection replaces the entry in Connected.
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	u := s.users[uid]
	if u == nil {
		return
	}
	if cur, ok := u.devices[clientID]; !ok || cur != gen || gen == 0 {
		return // an older connection of a client id that reconnected since
	}
	delete(u.devices, clientID)
	s.devices--
	s.localChanged(uid, u)
	s.recount(uid, u)
}

// recount publishes u's new device total, or starts the grace period when
// the last device anywhere left.
func (s *Service) recount(uid string, u *user) {
	if n := u.total(); n > 0 {
		s.stopTimer(u)
		s.publish(uid, u, View{Status: StatusOnline, Devices: n})
		return
	}
	u.lastSeen = s.opts.Clock.Now()
	s.startGrace(uid, u)
}

func (s *Service) localChanged(uid string, u *user) {
	if s.opts.Local != nil {
		s.opts.Local.LocalDevices(uid, len(u.devices))
	}
}

// SetRemote records that node holds devices connected devices of uid (0 =
// none left there). A user whose last device anywhere left goes through
// the grace period; a device reported within it cancels it. Each node
// stamps last_seen with its own clock when it learns of the departure, so
// nodes may disagree on it by the broadcast delay.
func (s *Service) SetRemote(node, uid string, devices int) {
	devices = max(devices, 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	users := s.remote[node]
	old := users[uid]
	if devices == old {
		return
	}
	if devices == 0 {
		delete(users, uid)
		if len(users) == 0 {
			delete(s.remote, node)
		}
	} else {
		if users == nil {
			users = make(map[string]int)
			s.remote[node] = users
		}
		users[uid] = devices
	}
	u := s.user(uid)
	u.remote += devices - old
	s.recount(uid, u)
}

// DropNode forgets every device of node (it left the cluster or died):
// each user left with no device anywhere goes through the grace period like
// a departure, never an instant offline.
func (s *Service) DropNode(node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	users := s.remote[node]
	delete(s.remote, node)
	if s.closed {
		return
	}
	for uid, n := range users {
		u := s.users[uid]
		if u == nil {
			continue
		}
		u.remote -= n
		s.recount(uid, u)
	}
}

// LocalSnapshot returns this node's own device count per user (users with
// at least one local device), for a node that joins to learn this one's
// share at once.
func (s *Service) LocalSnapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int)
	for uid, u := range s.users {
		if n := len(u.devices); n > 0 {
			out[uid] = n
		}
	}
	return out
}

// Restore takes a retained presence payload found at startup. A user the
// service already tracks (a device connected first) keeps its live state.
// A restored online status gets a grace period like a departure: if no
// device of the user connects within it, the user goes offline, so a
// retained "online" from before a restart is never left standing.
func (s *Service) Restore(uid string, payload []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if u := s.users[uid]; u != nil && u.known {
		return
	}
	u := s.user(uid)
	v, ok := decodeAggregate(payload)
	if !ok {
		// Not an aggregate (e.g. a raw will): replace it.
		s.publish(uid, u, View{Status: StatusOffline})
		return
	}
	if v.Status == StatusOffline {
		s.setView(u, v)
		if t, err := time.Parse(time.RFC3339, v.LastSeen); v.LastSeen != "" && err == nil {
			u.lastSeen = t
		}
		return
	}
	s.setView(u, v)
	// When the devices left is unknown; the restart is the best estimate.
	u.lastSeen = s.opts.Clock.Now()
	s.startGrace(uid, u)
}

// decodeAggregate reads a retained presence payload back: ok only for an
// aggregate this service publishes (online with at least one device and
// no last_seen; offline with no devices and last_seen RFC 3339 or absent).
// Anything else in the retained store (a raw will, a damaged or foreign
// payload) must not reach the users who see this presence.
func decodeAggregate(payload []byte) (View, bool) {
	var v View
	if err := json.Unmarshal(payload, &v); err != nil {
		return View{}, false
	}
	switch v.Status {
	case StatusOnline:
		return v, v.Devices >= 1 && v.LastSeen == ""
	case StatusOffline:
		if v.LastSeen != "" {
			if _, err := time.Parse(time.RFC3339, v.LastSeen); err != nil {
				return View{}, false
			}
		}
		return v, v.Devices == 0
	}
	return View{}, false
}

// View returns uid's current aggregate; a user never seen is offline.
func (s *Service) View(uid string) View {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[uid]; u != nil && u.known {
		return u.view
	}
	return View{Status: StatusOffline}
}

// Stats returns the number of online users (grace periods included) and of
// this node's connected devices (devices on other nodes are their gauges').
func (s *Service) Stats() (users, devices int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.online, s.devices
}

// Close stops every grace timer, publishes the changes not yet published
// and stops the workers; later calls change nothing. Call it before the
// broker closes, so the disconnects of shutdown publish nothing and what
// was pending still reaches the retained store.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	for _, u := range s.users {
		s.stopTimer(u)
	}
	s.mu.Unlock()
	s.out.close()
}

func (s *Service) user(uid string) *user {
	u := s.users[uid]
	if u == nil {
		u = &user{}
		s.users[uid] = u
	}
	if u.devices == nil {
		u.devices = make(map[string]uint64)
	}
	return u
}

func (s *Service) startGrace(uid string, u *user) {
	s.stopTimer(u)
	if s.opts.Grace <= 0 {
		s.goOffline(uid, u)
		return
	}
	u.timerGen++
	tg := u.timerGen
	u.timer = s.opts.Clock.AfterFunc(s.opts.Grace, func() { s.expire(uid, tg) })
}

func (s *Service) stopTimer(u *user) {
	if u.timer != nil {
		u.timer.Stop()
		u.timer = nil
	}
	u.timerGen++ // a timer that already fired and waits for the lock gives up
}

func (s *Service) expire(uid string, tg uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[uid]
	if s.closed || u == nil || u.timerGen != tg || u.total() > 0 {
		return
	}
	u.timer = nil
	s.goOffline(uid, u)
}

func (s *Service) goOffline(uid string, u *user) {
	v := View{Status: StatusOffline}
	if !u.lastSeen.IsZero() {
		v.LastSeen = u.lastSeen.UTC().Format(time.RFC3339)
	}
	s.publish(uid, u, v)
	u.devices = nil // offline users keep only their view
}

// setView records v as the published aggregate and keeps the online count.
func (s *Service) setView(u *user, v View) {
	if u.known && u.view.Status == StatusOnline {
		s.online--
	}
	if v.Status == StatusOnline {
		s.online++
	}
	u.view, u.known = v, true
}

// publish queues v for publishing unless it is what was published last. It
// runs under s.mu, so the queue receives each user's states in order; the
// queue publishes them in that order, newest last, outside the lock.
func (s *Service) publish(uid string, u *user, v View) {
	if u.known && u.view == v {
		return
	}
	payload, err := json.Marshal(v)
	if err != nil {
		s.opts.Logger.Error("encode presence", "user", uid, "error", err)
		return
	}
	s.out.put(uid, item{payload: payload, status: v.Status})
	s.setView(u, v)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Pending returns how many users have a change waiting to be published.
func (s *Service) Pending() int { return s.out.size() }

// Devices returns how many devices of uid are connected now, on any node;
// unlike View it drops to 0 as soon as the last one leaves, grace period or
// not (push decides by it whether an inbox delivery can reach anyone).
func (s *Service) Devices(uid string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[uid]; u != nil {
		return u.total()
	}
	return 0
}
