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
	to, err := responseRoute(uid, pk)
	if err != nil {
		return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{RequestID: peekID(pk.Payload, "request_id")}, err)
	}
	q, err := decodeSync(pk.Payload)
	if err != nil {
		return h.refuse(cl, uid, pk, to, ErrorEvent{RequestID: q.requestID}, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.RequestTimeout)
	defer cancel()
	var answer any
	if q.chat == "" {
		var list chat.ChatList
		if list, err = h.opts.Sync.ChatList(ctx, uid, q.list); err == nil {
			answer = SyncEvent{Type: "sync", RequestID: q.requestID, ChatList: list}
		}
	} else {
		var page chat.Page
		if page, err = h.opts.Sync.HistoryPage(ctx, uid, q.chat, q.page); err == nil {
			answer = HistoryEvent{Type: "history", RequestID: q.requestID, Chat: q.chat, Page: page}
		}
	}
	if err != nil {
		return h.refuse(cl, uid, pk, to, ErrorEvent{RequestID: q.requestID}, err)
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
		return 0, invalidRequest("limit", "limit must be 1 to 200")
	}
	return *limit, nil
}

// isNull reports whether a raw field is absent or null.
func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}

// syncQuery is a checked sync request: a page of the chat list (chat
// empty, list) or of one chat's history (page).
type syncQuery struct {
	requestID string
	chat      string
	list      chat.ListQuery
	page      chat.PageQuery
}

// decodeSync parses and checks a sync request. On error, requestID is the
// request's id when it was valid, for the error event.
func decodeSync(payload []byte) (syncQuery, error) {
	var req syncRequest
	if err := decodeRequest(payload, &req); err != nil {
		return syncQuery{requestID: peekID(payload, "request_id")}, err
	}
	if req.RequestID != "" && !validID(req.RequestID) {
		return syncQuery{}, invalidRequest("request_id", "request_id must be "+idRule)
	}
	q := syncQuery{requestID: req.RequestID, chat: req.Chat}
	var err error
	if req.Chat == "" {
		q.list, err = listQuery(req)
	} else {
		q.page, err = pageQuery(req)
	}
	return q, err
}

// listQuery is GET /v1/chats?changed_since=&after=&limit=.
func listQuery(req syncRequest) (chat.ListQuery, error) {
	if req.Before != nil {
		return chat.ListQuery{}, invalidRequest("before", "before is only used with chat (a history page)")
	}
	q := chat.ListQuery{}
	var err error
	if q.Limit, err = syncLimit(req.Limit); err != nil {
		return chat.ListQuery{}, err
	}
	if !isNull(req.After) && json.Unmarshal(req.After, &q.After) != nil {
		return chat.ListQuery{}, invalidRequest("after", "after must be the next cursor (a string) of a previous page")
	}
	if req.ChangedSince != "" {
		if q.ChangedSince, err = chat.ParseSyncCursor(req.ChangedSince); err != nil {
			return chat.ListQuery{}, err
		}
	}
	return q, nil
}

// pageQuery is GET /v1/chats/{chat}/messages?after=|before=&limit=, with
// the same paging rules (api/chats.go): after=0 is the oldest page, neither
// is the newest page.
func pageQuery(req syncRequest) (chat.PageQuery, error) {
	if req.ChangedSince != "" {
		return chat.PageQuery{}, invalidRequest("changed_since", "changed_since is only used without chat (a chat-list page)")
	}
	var q chat.PageQuery
	var err error
	if q.Limit, err = syncLimit(req.Limit); err != nil {
		return chat.PageQuery{}, err
	}
	q.Forward = !isNull(req.After)
	if q.Forward && json.Unmarshal(req.After, &q.After) != nil {
		return chat.PageQuery{}, invalidRequest("after", "after must be a non-negative integer seq")
	}
	if req.Before != nil {
		if q.Forward {
			return chat.PageQuery{}, invalidRequest("before", "use either after or before, not both")
		}
		q.Before = *req.Before
	}
	return q, nil
}
