package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// OwnedSender commits sends for the chats this node owns (chat.Service).
// It must return once the send is queued on the chat's writer, so sends
// forwarded in order are stored in that order.
type OwnedSender interface {
	EnqueueOwned(ctx context.Context, m store.Message, recipients []string) (wait func() (chat.Result, error), err error)
}

var _ chat.Router = (*Node)(nil)

// OwnerOf is the node that owns chat among nodes: rendezvous (highest
// random weight) hashing, so a node joining or leaving moves only the
// chats it gains or held, and every node computes the same answer from the
// same view.
func OwnerOf(chat string, nodes []string) string {
	var (
		best  string
		bestH uint64
	)
	for _, n := range nodes {
		h := weight(n, chat)
		if best == "" || h > bestH || (h == bestH && n < best) {
			best, bestH = n, h
		}
	}
	return best
}

// weight is FNV-1a over node, a separator and key, finished with the
// splitmix64 mixer so that weights of one key on similar node names are
// independent.
func weight(node, key string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(node); i++ {
		h ^= uint64(node[i])
		h *= 1099511628211
	}
	h ^= 0
	h *= 1099511628211
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// Owner reports which node owns chat in this node's view. With no view yet
// (or this node alone) every chat is local.
func (n *Node) Owner(chat string) (node string, local bool) {
	owner := OwnerOf(chat, n.view.ids())
	if owner == "" || owner == n.id {
		return n.id, true
	}
	return owner, false
}

// sendRequest is a routed send on its way to the chat's owner: the
// receiving node already checked membership and computed the recipients.
type sendRequest struct {
	Msg        store.Message `json:"msg"`
	Recipients []string      `json:"recipients"`
}

type sendReply struct {
	Msg       store.Message `json:"msg"`
	Duplicate bool          `json:"duplicate,omitempty"`
	Code      chat.Code     `json:"code,omitempty"`
	Error     string        `json:"error,omitempty"`
	Field     string        `json:"field,omitempty"` // the refusal's field, so a forwarded send names it as a local one does
}

const timeoutHeader = "Mqchat-Timeout-Ms"

// Forward sends a routed message to the node owning its chat. It returns
// once the request is on the wire, so forwards made in order are queued on
// the owner in that order; wait returns the owner's answer.
func (n *Node) Forward(ctx context.Context, node string, m store.Message, recipients []string) (func() (chat.Result, error), error) {
	b, err := json.Marshal(sendRequest{Msg: m, Recipients: recipients})
	if err != nil {
		return nil, fmt.Errorf("cluster: encode forwarded send: %w", err)
	}
	timeout := n.opts.RequestTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	start := time.Now()
	msg := nats.NewMsg(n.subject("node", node, "send"))
	msg.Data = b
	msg.Header.Set(timeoutHeader, strconv.FormatInt(timeout.Milliseconds(), 10))
	wait, err := n.calls.send(n, msg, node)
	if err != nil {
		n.m.Forwarded("error", time.Since(start))
		return nil, unavailable("the chat's node cannot be reached, retry with the same cmid", err)
	}
	return func() (chat.Result, error) {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		resp, err := wait(rctx)
		if err != nil {
			result := "error"
			if errors.Is(err, context.DeadlineExceeded) {
				result = "timeout"
			}
			n.m.Forwarded(result, time.Since(start))
			return chat.Result{}, unavailable("the chat's node did not answer in time, retry with the same cmid", err)
		}
		var rep sendReply
		if err := json.Unmarshal(resp.Data, &rep); err != nil {
			n.m.Forwarded("error", time.Since(start))
			return chat.Result{}, unavailable("the chat's node gave a malformed answer, retry with the same cmid", err)
		}
		n.m.Forwarded("ok", time.Since(start))
		if rep.Code != "" {
			return chat.Result{}, &chat.Error{Code: rep.Code, Message: rep.Error, Field: rep.Field}
		}
		return chat.Result{Message: rep.Msg, Duplicate: rep.Duplicate}, nil
	}, nil
}

func unavailable(msg string, err error) error {
	return &chat.Error{Code: chat.CodeUnavailable, Message: msg, Err: err}
}

// serveSend is the owner's side of Forward. It runs on the subscription's
// goroutine, one request after another, so requests are queued on the
// writer in arrival order; waiting for the commit happens on a goroutine
// of its own per request.
func (n *Node) serveSend(msg *nats.Msg) {
	if msg.Reply == "" {
		return
	}
	n.m.OwnedSend()
	answer := func(rep sendReply) {
		b, err := json.Marshal(rep)
		if err == nil {
			err = msg.Respond(b)
		}
		if err != nil {
			n.log.Warn("answer forwarded send", "error", err)
		}
	}
	refuse := func(err error) {
		answer(sendReply{Code: chat.CodeOf(err), Error: chat.MessageOf(err), Field: chat.FieldOf(err)})
	}
	if err := n.Check(); err != nil {
		refuse(unavailable("the chat's node is leaving the cluster, retry with the same cmid", err))
		return
	}
	var req sendRequest
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		refuse(&chat.Error{Code: chat.CodeInvalid, Message: "malformed forwarded send", Err: err})
		return
	}
	timeout := n.opts.RequestTimeout
	if ms, err := strconv.ParseInt(msg.Header.Get(timeoutHeader), 10, 64); err == nil && ms > 0 {
		timeout = min(timeout, time.Duration(ms)*time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	owned := n.handlers().owned
	if owned == nil {
		cancel()
		refuse(unavailable("this node does not accept sends yet", nil))
		return
	}
	wait, err := owned.EnqueueOwned(ctx, req.Msg, req.Recipients)
	if err != nil {
		cancel()
		refuse(err)
		return
	}
	go func() {
		defer cancel()
		res, err := wait()
		if err != nil {
			refuse(err)
			return
		}
		answer(sendReply{Msg: res.Message, Duplicate: res.Duplicate})
	}()
}

// calls matches answers to requests sent with Forward and Takeover. nats.go's
// own Request blocks until the answer; here the request goes out at once
// and the answer is awaited separately, which is what keeps pipelined
// sends of one connection in order.
type calls struct {
	mu      sync.Mutex
	next    uint64
	pending map[string]call
}

type call struct {
	ch   chan *nats.Msg
	node string // "" = not addressed to one node
}

// errNodeLeft answers the calls to a node that left the view: a paused
// node keeps its NATS subscriptions, so its requests would otherwise wait
// for the whole timeout after the others took its chats.
var errNodeLeft = errors.New("cluster: the node left the cluster")

func (c *calls) init() { c.pending = make(map[string]call) }

// failNode ends every call waiting on node with errNodeLeft.
func (c *calls) failNode(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for token, cl := range c.pending {
		if cl.node == node {
			delete(c.pending, token)
			close(cl.ch)
		}
	}
}

func (n *Node) replyPrefix() string { return n.subject("reply", n.id) + "." }

// send publishes msg with a fresh reply subject; wait returns the first
// answer. A "no responders" status (nobody subscribes to the subject: the
// node is gone) is an error at once.
func (c *calls) send(n *Node, msg *nats.Msg, node string) (wait func(context.Context) (*nats.Msg, error), err error) {
	ch := make(chan *nats.Msg, 1)
	c.mu.Lock()
	c.next++
	token := strconv.FormatUint(c.next, 36)
	c.pending[token] = call{ch: ch, node: node}
	c.mu.Unlock()
	drop := func() {
		c.mu.Lock()
		delete(c.pending, token)
		c.mu.Unlock()
	}
	msg.Reply = n.replyPrefix() + token
	if err := n.nc.PublishMsg(msg); err != nil {
		drop()
		return nil, err
	}
	return func(ctx context.Context) (*nats.Msg, error) {
		defer drop()
		select {
		case m, ok := <-ch:
			if !ok {
				return nil, errNodeLeft
			}
			if noResponders(m) {
				return nil, nats.ErrNoResponders
			}
			return m, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, nil
}

func noResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}

func (c *calls) answer(n *Node, m *nats.Msg) {
	token := m.Subject[len(n.replyPrefix()):]
	c.mu.Lock()
	defer c.mu.Unlock()
	cl, ok := c.pending[token]
	if !ok {
		return // the caller gave up, or the node left
	}
	select {
	case cl.ch <- m:
	default: // a second answer (takeover replies from several nodes): the first counts
	}
}
