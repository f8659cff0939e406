package hooks

import (
	"bytes"
	"context"
	"encoding/json"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/services/chat"
)

// SyncSource is the chat service as users/{uid}/sync uses it: the same
// reads as GET /v1/chats and GET /v1/chats/{chat}/messages.
type SyncSource interface {
	ChatList(ctx context.Context, uid string, q chat.ListQuery) (chat.ChatList, error)
	HistoryPage(ctx context.Context, uid, chat string, q chat.PageQuery) (chat.Page, error)
}

// syncRequest asks for a page of the chat list (no chat) or of one chat's
// history (chat set). after is a page cursor string for the former and a
// seq for the latter, hence raw.
type syncRequest struct {
	RequestID    string          `json:"request_id"`
	Chat         string          `json:"chat"`
	ChangedSince string          `json:"changed_since"`
	After        json.RawMessage `json:"after"`
	Before       *uint64         `json:"before"`
	Limit        *int            `json:"limit"`
}

// SyncEvent answers a chat-list request: the body of GET /v1/chats.
type SyncEvent struct {
	Type      string `json:"type"` // "sync"
	RequestID string `json:"request_id,omitempty"`
	chat.ChatList
}

// HistoryEvent answers a history request: the body of GET
// /v1/chats/{chat}/messages.
type HistoryEvent struct {
	Type      string `json:"type"` // "history"
	RequestID string `json:"request_id,omitempty"`
	Chat      string `json:"chat"`
	chat.Page
}

const defaultSyncPage = 50 // as REST

// answerSync answers a sync request on the requester's events topic, or on
// the MQTT 5 Response Topic it names (with its Correlation Data), which
// must be users/{uid}/events or inside users/{uid}/responses/: a response
// topic never lets a client publish into anyone else's subtree, nor into
// its own inbox, which carries only chat messages.
func (h *Chat) answerSync(cl *mqtt.Client, uid string, pk packets.Packet) error {
	if h.opts.Sync == nil {
		return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{}, notEnabled(pk.TopicName))
	}
	var to replyTo
	if rt := pk.Properties.ResponseTopic; rt != "" {
		if !validResponseTopic(uid, rt) {
			return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{RequestID: peekID(pk.Payload, "request_id")}, &chat.Error{
				Code: chat.CodeNotAuthorized, Message: "the response topic must be users/" + uid + "/events or under users/" + uid + "/responses/",
			})
		}
		to = replyTo{topic: rt, correlation: pk.Properties.CorrelationData}
	}
	var req syncRequest
	if err := decodeRequest(pk.Payload, &req); err != nil {
		return h.refuse(cl, uid, pk, to, ErrorEvent{RequestID: peekID(pk.Payload, "request_id")}, err)
	}
	if req.RequestID != "" && !validID(req.RequestID) {
		return h.refuse(cl, uid, pk, to, ErrorEvent{}, invalidRequest("request_id must be "+idRule))
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.RequestTimeout)
	defer cancel()
	var (
		answer any
		err    error
	)
	if req.Chat == "" {
		answer, err = h.syncChats(ctx, uid, req)
	} else {
		answer, err = h.syncHistory(ctx, uid, req)
	}
	if err != nil {
		return h.refuse(cl, uid, pk, to, ErrorEvent{RequestID: req.RequestID}, err)
	}
	h.answer(uid, to, answer)
	return packets.CodeSuccessIgnore
}

func validResponseTopic(uid, topic string) bool {
	owner, leaf, ok := splitUserTopic(topic)
	return ok && owner == uid && !hasWildcard(leaf) && (leaf == LeafEvents || inResponses(leaf))
}

func syncLimit(limit *int) (int, error) {
	if limit == nil {
		return defaultSyncPage, nil
	}
	if *limit < 1 || *limit > 200 {
		return 0, invalidRequest("limit must be 1 to 200")
	}
	return *limit, nil
}

// isNull reports whether a raw field is absent or null.
func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

// syncChats is GET /v1/chats?changed_since=&after=&limit=.
func (h *Chat) syncChats(ctx context.Context, uid string, req syncRequest) (any, error) {
	if req.Before != nil {
		return nil, invalidRequest("before is only used with chat (a history page)")
	}
	q := chat.ListQuery{}
	var err error
	if q.Limit, err = syncLimit(req.Limit); err != nil {
		return nil, err
	}
	if !isNull(req.After) && json.Unmarshal(req.After, &q.After) != nil {
		return nil, invalidRequest("after must be the next cursor (a string) of a previous page")
	}
	if req.ChangedSince != "" {
		if q.ChangedSince, err = chat.ParseSyncCursor(req.ChangedSince); err != nil {
			return nil, err
		}
	}
	list, err := h.opts.Sync.ChatList(ctx, uid, q)
	if err != nil {
		return nil, err
	}
	return SyncEvent{Type: "sync", RequestID: req.RequestID, ChatList: list}, nil
}

// syncHistory is GET /v1/chats/{chat}/messages?after=|before=&limit=, with
// the same paging rules (api/chats.go): after=0 is the oldest page, neither
// is the newest page.
func (h *Chat) syncHistory(ctx context.Context, uid string, req syncRequest) (any, error) {
	if req.ChangedSince != "" {
		return nil, invalidRequest("changed_since is only used without chat (a chat-list page)")
	}
	var q chat.PageQuery
	var err error
	if q.Limit, err = syncLimit(req.Limit); err != nil {
		return nil, err
	}
	q.Forward = !isNull(req.After)
	if q.Forward && json.Unmarshal(req.After, &q.After) != nil {
		return nil, invalidRequest("after must be a non-negative integer seq")
	}
	if req.Before != nil {
		if q.Forward {
			return nil, invalidRequest("use either after or before, not both")
		}
		q.Before = *req.Before
	}
	page, err := h.opts.Sync.HistoryPage(ctx, uid, req.Chat, q)
	if err != nil {
		return nil, err
	}
	ev := HistoryEvent{Type: "history", RequestID: req.RequestID, Chat: req.Chat, Page: page}
	return ev, nil
}
