// Package chat is the send pipeline and history: it validates envelopes,
// deduplicates retries, gives every message its chat's next seq through the
// chat's single writer, stores it durably and only then fans it out.
package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/store"
)

// Store is the slice of the storage contract the pipeline uses.
type Store interface {
	store.Messages
	store.Dedupe
	UserByID(ctx context.Context, id string) (store.User, error)
	UsersByID(ctx context.Context, ids []string) (map[string]store.User, error)
	Member(ctx context.Context, groupID, uid string) (store.Member, error)
	Members(ctx context.Context, groupID string) ([]store.Member, error)
	JoinChat(ctx context.Context, uid, chat string, at time.Time) error
}

// Deliverer fans a stored message out to its recipients' inboxes. It is
// called by the chat's writer, in seq order, after the message is durable.
type Deliverer interface {
	Deliver(recipients []string, m store.Message)
}

// Metrics receives the pipeline's observations; every method must be cheap.
type Metrics interface {
	ObserveCommit(d time.Duration, messages int, err error)
	ObserveSend(result string)
	ObserveReject(code Code)
}

// DirectStarts is told when a 1:1 chat gets its first message, once the
// message is stored: from then on its two users may see each other's
// presence.
type DirectStarts interface {
	DirectChatStarted(a, b string)
}

// Router sends a chat's messages to the node that owns it, in a cluster.
type Router interface {
	// Owner names the node owning chat; local is true when it is this one.
	Owner(chat string) (node string, local bool)
	// Forward sends a routed message to node, returning once it is on its
	// way (so forwards made in order are stored in that order); wait
	// returns the owner's answer.
	Forward(ctx context.Context, node string, m store.Message, recipients []string) (wait func() (Result, error), err error)
}

// Fence tells the writers whether this node may still commit messages. In a
// cluster a node that cannot renew its membership must stop writing the
// chats it believed it owned before another node takes them over.
type Fence interface {
	// Check returns nil while commits are allowed, and the reason otherwise.
	Check() error
}

// Limiter rate-limits sends per user.
type Limiter interface {
	Allow(key string) bool
}

// Options configures the service.
type Options struct {
	// List enables the chat list and read cursors; nil in pipelines that
	// only send. Receipts, when set, is told of every read cursor that
	// moved (it publishes the receipts).
	List     ListStore
	Receipts ReadReceipts
	// Started, when set, is told of every 1:1 chat's first message.
	Started DirectStarts
	// Blocks, when set, hides a blocked user's 1:1 messages from the
	// blocker (see blocks.go).
	Blocks Blocks
	// Requests, when set, makes 1:1 chats opened with strangers message
	// requests (see requests.go).
	Requests Requests
	// Attachments, when set, makes image and file messages reference
	// uploads (see attachments.go).
	Attachments Attachments

	// Router, when set, sends messages of chats owned by other nodes to
	// them (cluster mode); nil = every chat is this node's.
	Router Router
	// Fence, when set, is asked right before every commit; a batch it
	// refuses is answered CodeUnavailable without being written. nil
	// allows every commit (single node).
	Fence Fence

	// EditWindow is how long a sender may edit a message: 0 =
	// DefaultEditWindow, negative = no edits. ReactionsPerMessage bounds
	// the distinct emoji on one message: 0 = DefaultReactionsPerMessage.
	EditWindow          time.Duration
	ReactionsPerMessage int

	// Archive, when set, serves history below a chat's live range (the
	// messages retention archived and purged); nil = the store only.
	Archive Archive

	MaxMessageBytes int
	Limiter         Limiter // nil = unlimited
	Shards          int     // writer goroutines; each chat belongs to exactly one
	Logger          *slog.Logger
	Metrics         Metrics
	Now             func() time.Time
}

// Result is the outcome of an accepted send.
type Result struct {
	Message   store.Message // for a duplicate: Chat, Seq, ID and SentAt of the original
	Duplicate bool
}

// Service implements sending and reading chat messages.
type Service struct {
	st      Store
	list    ListStore
	deliver Deliverer
	ids     *ids.Generator
	opts    Options
	shards  []*writer
	stop    chan struct{}
	done    chan struct{}

	// sending holds the (sender, cmid) pairs being sent right now. Dedupe is
	// per sender but writers are per chat, so two sends of one cmid to two
	// chats would otherwise meet on different writers and both be stored.
	mu      sync.Mutex
	sending map[string]chan struct{}

	// epoch moves when chat ownership may have changed (cluster view
	// changes, a lost lease): writers then forget the last seqs they
	// cached, since another node may have written those chats meanwhile.
	epoch atomic.Uint64

	// known caches user ids seen to exist: accounts are never deleted, and
	// the recipient check is otherwise a store read on every direct send.
	knownMu sync.RWMutex
	known   map[string]struct{}
}

// maxKnown bounds the known-users cache; past it the cache starts over.
const maxKnown = 1 << 16

// New starts the service's writers; Close stops them.
func New(st Store, d Deliverer, gen *ids.Generator, opts Options) *Service {
	if opts.Shards <= 0 {
		opts.Shards = DefaultShards
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 64 << 10
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.EditWindow == 0 {
		opts.EditWindow = DefaultEditWindow
	}
	if opts.ReactionsPerMessage <= 0 {
		opts.ReactionsPerMessage = DefaultReactionsPerMessage
	}
	if opts.Metrics == nil {
		opts.Metrics = nopMetrics{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Service{
		st: st, list: opts.List, deliver: d, ids: gen, opts: opts,
		stop: make(chan struct{}), done: make(chan struct{}), sending: make(map[string]chan struct{}),
		known: make(map[string]struct{}),
	}
	s.shards = make([]*writer, opts.Shards)
	for i := range s.shards {
		s.shards[i] = newWriter(s)
	}
	go s.run()
	return s
}

func (s *Service) run() {
	defer close(s.done)
	finished := make(chan struct{}, 2*len(s.shards))
	for _, w := range s.shards {
		go func() { w.loop(s.stop); finished <- struct{}{} }()
		go func() { w.fanout(); finished <- struct{}{} }()
	}
	for range 2 * len(s.shards) {
		<-finished
	}
}

// Close stops accepting sends, lets every queued send finish and waits.
func (s *Service) Close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// fanoutIdle reports whether every stored message has been fanned out.
func (s *Service) fanoutIdle() bool {
	for _, w := range s.shards {
		if w.fanning.Load() != 0 {
			return false
		}
	}
	return true
}

// QueuePayload decodes a raw envelope (as published on MQTT) and sends it,
// in two steps so that one connection can have many sends in flight: it
// validates the envelope and queues the send on its chat's writer before it
// returns, so sends queued one after another keep their order (and get
// ascending seqs), and wait blocks until the send is durable. ctx must stay live until wait returns; wait must be called
// exactly once when err is nil.
func (s *Service) QueuePayload(ctx context.Context, from string, payload []byte) (Envelope, func() (Result, error), error) {
	if err := s.admit(from); err != nil {
		return Envelope{}, nil, err
	}
	if len(payload) > s.opts.MaxMessageBytes {
		err := newError(CodeTooLarge, fmt.Sprintf("payload is %d bytes, the limit is %d", len(payload), s.opts.MaxMessageBytes), nil)
		s.opts.Metrics.ObserveReject(err.Code)
		return Envelope{}, nil, err
	}
	env, err := decodeEnvelope(payload)
	if err != nil {
		s.opts.Metrics.ObserveReject(CodeOf(err))
		return env, nil, err
	}
	wait, err := s.queue(ctx, from, env)
	if err != nil {
		s.opts.Metrics.ObserveReject(CodeOf(err))
		return env, nil, err
	}
	return env, func() (Result, error) { return s.observe(wait()) }, nil
}

// Send validates env and sends it from the user from.
func (s *Service) Send(ctx context.Context, from string, env Envelope) (Result, error) {
	if err := s.admit(from); err != nil {
		return Result{}, err
	}
	if err := validateEnvelope(&env); err != nil {
		s.opts.Metrics.ObserveReject(CodeOf(err))
		return Result{}, err
	}
	if len(env.Body) > s.opts.MaxMessageBytes {
		err := newError(CodeTooLarge, fmt.Sprintf("body is %d bytes, the limit is %d", len(env.Body), s.opts.MaxMessageBytes), nil)
		s.opts.Metrics.ObserveReject(err.Code)
		return Result{}, err
	}
	return s.send(ctx, from, env)
}

// admit applies the per-user send rate before any work is done.
func (s *Service) admit(from string) error {
	if s.opts.Limiter == nil || s.opts.Limiter.Allow(from) {
		return nil
	}
	err := newError(CodeQuota, "sending too fast, slow down and retry with the same cmid", nil)
	s.opts.Metrics.ObserveReject(err.Code)
	return err
}

func (s *Service) send(ctx context.Context, from string, env Envelope) (Result, error) {
	wait, err := s.queue(ctx, from, env)
	if err != nil {
		s.opts.Metrics.ObserveReject(CodeOf(err))
		return Result{}, err
	}
	return s.observe(wait())
}

func (s *Service) observe(res Result, err error) (Result, error) {
	switch {
	case err != nil:
		s.opts.Metrics.ObserveReject(CodeOf(err))
		return Result{}, err
	case res.Duplicate:
		s.opts.Metrics.ObserveSend("duplicate")
	default:
		s.opts.Metrics.ObserveSend("stored")
	}
	return res, nil
}

// queue routes env and queues it on its writer; wait returns the outcome.
func (s *Service) queue(ctx context.Context, from string, env Envelope) (wait func() (Result, error), err error) {
	m, recipients, err := s.route(ctx, from, env)
	if err != nil {
		if res, ok, dupErr := s.earlierSend(ctx, from, env, err); ok {
			return func() (Result, error) { return res, dupErr }, nil
		}
		return nil, err
	}
	if err := s.claimAttachment(ctx, &m); err != nil {
		return nil, err
	}
	return s.enqueue(ctx, m, recipients)
}

// duplicateOf is the answer to a send whose (sender, cmid) already stored
// the message ref points at. Both the writer and earlierSend answer with
// it, so a reused cmid gets one answer whoever it is addressed to.
func duplicateOf(m store.Message, ref store.MessageRef) (Result, error) {
	m.Chat, m.Seq, m.ID, m.SentAt = ref.Chat, ref.Seq, ref.ID, ref.SentAt
	return Result{Message: m, Duplicate: true}, nil
}

// earlierSend answers a direct send refused for an unknown recipient whose
// cmid the sender has used before as a send to an existing user would be
// (the writer's replay): a cmid that names a message of another chat is
// refused as reused. Otherwise a reused cmid would be a silent existence
// test (an existing id answers cmid_reused, an unknown one
// unknown_recipient).
func (s *Service) earlierSend(ctx context.Context, from string, env Envelope, refusal error) (res Result, handled bool, err error) {
	if CodeOf(refusal) != CodeUnknownRecipient || env.CMID == "" {
		return Result{}, false, nil
	}
	ref, lookupErr := s.st.LookupDedupe(ctx, from, env.CMID)
	if lookupErr != nil {
		return Result{}, false, nil
	}
	target, _ := strings.CutPrefix(env.To, "user:")
	if ref.Chat != DirectChatID(from, target) {
		return Result{}, true, cmidReused(env.CMID)
	}
	// The earlier message went to this very id, which has since gone (a
	// deleted account): its retry is answered as before.
	res, err = duplicateOf(messageOf(from, "", env), ref)
	return res, true, err
}

func (s *Service) route(ctx context.Context, from string, env Envelope) (store.Message, []string, error) {
	target, isUser := strings.CutPrefix(env.To, "user:")
	if !isUser {
		return s.routeGroup(ctx, from, strings.TrimPrefix(env.To, "group:"), env)
	}
	if !ids.ValidUserID(target) {
		return store.Message{}, nil, newError(CodeUnknownRecipient, "no such user: "+target, nil)
	}
	if err := s.userExists(ctx, target); err != nil {
		return store.Message{}, nil, err
	}
	m := messageOf(from, DirectChatID(from, target), env)
	recipients, err := s.directRecipients(ctx, from, target)
	// A change (an edit, a reaction) is no reply: it accepts no request.
	if err == nil && target != from && m.Change == nil {
		err = s.replied(ctx, from, m.Chat)
	}
	if err != nil {
		return store.Message{}, nil, err
	}
	return m, recipients, nil
}

// messageOf is the message a validated envelope asks to store in chat.
func messageOf(from, chat string, env Envelope) store.Message {
	m := store.Message{
		Chat: chat, From: from, CMID: env.CMID, Type: env.Type,
		Body: []byte(env.Body), ReplyTo: env.ReplyTo,
	}
	if c, _ := env.change(); c != nil { // validated: at most one
		m.Change, m.Type = c, changeType(c.Kind)
		if c.Kind != store.ChangeEdit {
			m.Body = nil
		}
	}
	return m
}

// userExists checks a direct send's recipient.
func (s *Service) userExists(ctx context.Context, uid string) error {
	s.knownMu.RLock()
	_, ok := s.known[uid]
	s.knownMu.RUnlock()
	if ok {
		return nil
	}
	u, err := s.st.UserByID(ctx, uid)
	if err == nil && u.Deleted() {
		err = store.ErrNotFound // a tombstone receives nothing
	}
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return newError(CodeUnknownRecipient, "no such user: "+uid, nil)
		}
		return s.storeError(ctx, "look up recipient", err)
	}
	s.knownMu.Lock()
	if len(s.known) >= maxKnown {
		clear(s.known)
	}
	s.known[uid] = struct{}{}
	s.knownMu.Unlock()
	return nil
}

func (s *Service) routeGroup(ctx context.Context, from, gid string, env Envelope) (store.Message, []string, error) {
	recipients, err := s.groupRecipients(ctx, gid, from)
	if err != nil {
		return store.Message{}, nil, err
	}
	return messageOf(from, GroupChatID(gid), env), recipients, nil
}

// groupRecipients returns the members of gid if uid is one of them; the
// member list answers both questions with one read.
func (s *Service) groupRecipients(ctx context.Context, gid, uid string) ([]string, error) {
	if !ValidChatID(GroupChatID(gid)) {
		return nil, newError(CodeNotAuthorized, "not a member of this group", nil)
	}
	members, _, err := Participants(ctx, s.st, GroupChatID(gid))
	if err != nil {
		return nil, s.storeError(ctx, "group members", err)
	}
	if !slices.Contains(members, uid) {
		return nil, newError(CodeNotAuthorized, "not a member of group "+gid, nil)
	}
	return members, nil
}

func (s *Service) submit(ctx context.Context, m store.Message, recipients []string) (Result, error) {
	wait, err := s.enqueue(ctx, m, recipients)
	if err != nil {
		return Result{}, err
	}
	return wait()
}

// enqueue sends m to the node owning its chat: this node's writer, or the
// owner through the Router.
func (s *Service) enqueue(ctx context.Context, m store.Message, recipients []string) (wait func() (Result, error), err error) {
	if s.opts.Router != nil {
		if node, local := s.opts.Router.Owner(m.Chat); !local {
			return s.opts.Router.Forward(ctx, node, m, recipients)
		}
	}
	return s.EnqueueOwned(ctx, m, recipients)
}

// OwnershipChanged tells the writers that chats may have changed owner:
// each forgets its cached last seqs before its next batch.
func (s *Service) OwnershipChanged() { s.epoch.Add(1) }

// EnqueueOwned claims m's (sender, cmid) and queues m on its chat's writer
// on this node; wait returns the writer's answer and releases the claim.
// It is the owner's side of a forwarded send, and must return once m is
// queued so that forwards keep their order.
func (s *Service) EnqueueOwned(ctx context.Context, m store.Message, recipients []string) (wait func() (Result, error), err error) {
	release := func() {}
	if m.CMID != "" {
		if release, err = s.claim(ctx, m.From+"\x00"+m.CMID); err != nil {
			return nil, err
		}
	}
	w := s.shardFor(m.Chat)
	r, err := w.enqueue(ctx, m, recipients)
	if err != nil {
		release()
		return nil, err
	}
	return func() (Result, error) {
		defer release()
		return w.await(ctx, r)
	}, nil
}

// SendSystem stores a server-made message (type "system") in a group's
// chat, on behalf of actor, and fans it out to recipients: the group's
// change log, ordered with its messages by the same seq.
func (s *Service) SendSystem(ctx context.Context, gid, actor string, body []byte, recipients []string) (store.Message, error) {
	res, err := s.submit(ctx, store.Message{Chat: GroupChatID(gid), From: actor, Type: "system", Body: body}, recipients)
	return res.Message, err
}

// claim waits until no other send of the same (sender, cmid) is in
// progress and marks this one, so the writer's dedupe lookup always sees a
// concurrent twin's outcome. Retries of one message are rare and quick, so
// waiting costs nothing in practice.
func (s *Service) claim(ctx context.Context, key string) (release func(), err error) {
	for {
		s.mu.Lock()
		busy, ok := s.sending[key]
		if !ok {
			mine := make(chan struct{})
			s.sending[key] = mine
			s.mu.Unlock()
			return func() {
				s.mu.Lock()
				delete(s.sending, key)
				s.mu.Unlock()
				close(mine)
			}, nil
		}
		s.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, newError(CodeUnavailable, "send timed out, retry with the same cmid", ctx.Err())
		}
	}
}

func (s *Service) storeError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return newError(CodeUnavailable, "request cancelled or timed out", err)
	}
	s.opts.Logger.Error("chat store failure", "op", what, "error", err)
	return newError(CodeInternal, "storage failure, retry later", fmt.Errorf("%s: %w", what, err))
}

func (s *Service) shardFor(chat string) *writer {
	return s.shards[ShardOf(chat, len(s.shards))]
}

// DefaultShards is how many writers a Service runs when Options.Shards is 0.
const DefaultShards = 16

// ShardOf is the writer (0 to n-1) that owns chat among n writers. It is
// exported for load tools that must reach every writer on purpose (the
// isolation benchmark sends one message per writer).
func ShardOf(chat string, n int) int {
	// FNV-1a: stable and allocation-free.
	h := uint32(2166136261)
	for i := 0; i < len(chat); i++ {
		h ^= uint32(chat[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

// History returns a page of a chat the user belongs to.
func (s *Service) History(ctx context.Context, uid, chat string, q store.HistoryQuery) ([]store.Message, error) {
	if err := s.CanRead(ctx, uid, chat); err != nil {
		return nil, err
	}
	if q.Limit <= 0 || q.Limit > 200 {
		return nil, Invalid("limit", "limit must be 1 to 200")
	}
	msgs, err := s.st.History(ctx, chat, q)
	if err != nil {
		return nil, s.storeError(ctx, "history", err)
	}
	if msgs, err = s.withArchived(ctx, chat, q, msgs); err != nil {
		return nil, s.storeError(ctx, "archived history", err)
	}
	return msgs, nil
}

// errNoSuchChat refuses a string that is no chat id: not_found, as for
// any other path naming nothing, rather than not_authorized, which would
// suggest the chat exists.
var errNoSuchChat = &Error{Code: CodeNotFound, Field: "chat", Message: "no such chat: not a chat id"}

// CanRead returns nil when uid may read chat: one of the two users of a 1:1
// chat, or a current member of a group.
func (s *Service) CanRead(ctx context.Context, uid, chat string) error {
	if !ValidChatID(chat) {
		return errNoSuchChat
	}
	if IsDirectMember(chat, uid) {
		return nil
	}
	if gid, ok := GroupID(chat); ok {
		_, err := s.st.Member(ctx, gid, uid)
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return s.storeError(ctx, "group member", err)
		}
	}
	return newError(CodeNotAuthorized, "not a member of this chat", nil)
}

// Members lists who takes part in chat: the two users of a 1:1 chat (one
// for a notes-to-self chat) or a group's current members. It checks no
// access: callers pair it with CanRead.
func (s *Service) Members(ctx context.Context, chat string) ([]string, error) {
	uids, ok, err := Participants(ctx, s.st, chat)
	if !ok {
		return nil, errNoSuchChat
	}
	if err != nil {
		return nil, s.storeError(ctx, "members", err)
	}
	return uids, nil
}

type nopMetrics struct{}

func (nopMetrics) ObserveCommit(time.Duration, int, error) {}
func (nopMetrics) ObserveSend(string)                      {}
func (nopMetrics) ObserveReject(Code)                      {}
