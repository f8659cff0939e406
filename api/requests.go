package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/internal/jsonerr"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// This file holds every decoder of client input the REST API has of its
// own: request bodies, query parameters, path parameters and headers. Each
// is a plain function of the raw input, so the handlers only wire them to
// the services, and each has a fuzz target (requests_fuzz_test.go).

// Every decoder refuses with a *chat.Error: invalid_payload naming the
// field (body key, query or path parameter, header) at fault, which fail
// answers like any other refusal.

// invalid refuses the request because of field.
func invalid(field, msg string) error { return chat.Invalid(field, msg) }

// decodeJSON decodes a request body that is exactly one JSON value into v,
// refusing unknown fields and oversize bodies.
func decodeJSON(r io.Reader, v any) error {
	dec := jsonDecoder(r)
	err := dec.Decode(v)
	if err == nil {
		// A second value (or any other data) after the first would be
		// dropped without a word.
		if _, err = dec.Token(); err == io.EOF {
			return nil
		}
		if err == nil {
			err = errors.New("data after the JSON value")
		}
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &chat.Error{Code: chat.CodeTooLarge, Message: "request body is too large"}
	}
	field, msg := jsonerr.Explain(err)
	return invalid(field, msg)
}

// refreshBody is POST /v1/auth/refresh.
type refreshBody struct {
	RefreshToken string `json:"refresh_token"`
}

// check refuses a missing token as unauthenticated, as a bad one is: login
// without a password and refresh without a token are the same mistake.
func (b refreshBody) check() error {
	if b.RefreshToken == "" {
		return &chat.Error{Code: chat.CodeUnauthenticated, Field: "refresh_token", Message: "refresh_token is required"}
	}
	return nil
}

// groupBody is POST /v1/groups; the groups service checks its fields.
// Members is the deprecated name of UserIDs, the name every other
// members list uses.
type groupBody struct {
	Name    string   `json:"name"`
	UserIDs []string `json:"user_ids"`
	Members []string `json:"members"`
}

// userIDs merges user_ids and its alias members.
func (b groupBody) userIDs() ([]string, error) {
	if b.UserIDs != nil && b.Members != nil {
		return nil, invalid("members", "members is the old name of user_ids: send only user_ids")
	}
	if b.UserIDs != nil {
		return b.UserIDs, nil
	}
	return b.Members, nil
}

// renameBody is PATCH /v1/groups/{id}.
type renameBody struct {
	Name string `json:"name"`
}

// membersBody is POST /v1/groups/{id}/members.
type membersBody struct {
	UserIDs []string `json:"user_ids"`
}

func (b membersBody) check() error {
	if len(b.UserIDs) == 0 {
		return invalid("user_ids", "user_ids must list at least one user")
	}
	return nil
}

// roleBody is PATCH /v1/groups/{id}/members/{user_id}.
type roleBody struct {
	Role store.Role `json:"role"`
}

// readBody is POST /v1/chats/{chat}/read: read_seq, the name MQTT
// receipts use, or its deprecated alias seq.
type readBody struct {
	ReadSeq *uint64 `json:"read_seq"`
	Seq     *uint64 `json:"seq"`
}

// readSeq is the seq the body names; the chat service refuses 0.
func (b readBody) readSeq() (uint64, error) {
	switch {
	case b.ReadSeq != nil && b.Seq != nil && *b.ReadSeq != *b.Seq:
		return 0, invalid("seq", "seq is the old name of read_seq: send only read_seq")
	case b.ReadSeq != nil:
		return *b.ReadSeq, nil
	case b.Seq != nil:
		return *b.Seq, nil
	}
	return 0, invalid("read_seq", "read_seq is required")
}

// ackBody is POST /v1/devices/{device_id}/messages/ack: delete the
// device's messages up to seq.
type ackBody struct {
	Seq uint64 `json:"seq"`
}

// sendBody is POST /v1/chats/{chat}/messages; the cmid comes from the
// Idempotency-Key header and the recipient from the path.
type sendBody struct {
	Type    string          `json:"type"`
	Body    json.RawMessage `json:"body"`
	ReplyTo uint64          `json:"reply_to,omitempty"`
}

// sendEnvelope builds the envelope uid sends to chatID over REST; the chat
// service validates it like one published on MQTT.
func sendEnvelope(uid, chatID, cmid string, body io.Reader) (chat.Envelope, error) {
	if cmid == "" {
		return chat.Envelope{}, invalid("Idempotency-Key", "the Idempotency-Key header is required (it is the message's cmid)")
	}
	if !chat.ValidChatID(chatID) {
		return chat.Envelope{}, &chat.Error{Code: chat.CodeNotFound, Field: "chat", Message: "no such chat: not a chat id"}
	}
	var to string
	if x, y, ok := chat.DirectMembers(chatID); ok && (uid == x || uid == y) {
		to = "user:" + x
		if uid == x {
			to = "user:" + y
		}
	} else if gid, ok := chat.GroupID(chatID); ok {
		to = "group:" + gid // membership is checked by the pipeline
	} else {
		return chat.Envelope{}, &chat.Error{Code: chat.CodeNotAuthorized, Message: "not a member of this chat"}
	}
	var in sendBody
	if err := decodeJSON(body, &in); err != nil {
		return chat.Envelope{}, err
	}
	return chat.Envelope{To: to, CMID: cmid, Type: in.Type, Body: in.Body, ReplyTo: in.ReplyTo}, nil
}

// deviceBody is PUT /v1/devices/{device_id}.
type deviceBody struct {
	Platform  store.Platform `json:"platform"`
	PushToken string         `json:"push_token"`
}

// decodeDevice reads PUT /v1/devices/{device_id}; the token comes back
// trimmed.
func decodeDevice(id string, body io.Reader) (deviceBody, error) {
	if !ids.ValidDeviceID(id) {
		return deviceBody{}, invalid("device_id", "device_id must be 1 to 64 printable ASCII characters without / + #")
	}
	var in deviceBody
	if err := decodeJSON(body, &in); err != nil {
		return deviceBody{}, err
	}
	switch in.Platform {
	case store.PlatformAndroid, store.PlatformIOS, store.PlatformWeb:
	default:
		return deviceBody{}, invalid("platform", `platform must be "android", "ios" or "web"`)
	}
	in.PushToken = strings.TrimSpace(in.PushToken)
	// Control characters are in no FCM token, and PostgreSQL text cannot
	// hold NUL.
	if in.PushToken == "" || len(in.PushToken) > maxPushToken || !utf8.ValidString(in.PushToken) ||
		strings.IndexFunc(in.PushToken, unicode.IsControl) >= 0 {
		return deviceBody{}, invalid("push_token", "push_token must be a non-empty FCM registration token")
	}
	return in, nil
}

// parseLimit reads ?limit= (1-200, default 50).
func parseLimit(q url.Values) (int, error) {
	s := q.Get("limit")
	if s == "" {
		return defaultPage, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 200 {
		return 0, invalid("limit", "limit must be an integer from 1 to 200")
	}
	return n, nil
}

// parseSeq reads a seq parameter; absent or empty is 0.
func parseSeq(q url.Values, name string) (uint64, error) {
	s := q.Get(name)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, invalid(name, name+" must be a non-negative integer seq")
	}
	return v, nil
}

// parseHistoryQuery reads GET /v1/chats/{chat}/messages?after=|before=&limit=:
// after (even empty, = 0: the oldest page) pages forward, otherwise the
// page is the newest below before.
func parseHistoryQuery(q url.Values) (chat.PageQuery, error) {
	var p chat.PageQuery
	var err error
	if p.After, err = parseSeq(q, "after"); err != nil {
		return chat.PageQuery{}, err
	}
	if p.Before, err = parseSeq(q, "before"); err != nil {
		return chat.PageQuery{}, err
	}
	p.Forward = q.Has("after")
	if p.Forward && q.Has("before") {
		return chat.PageQuery{}, invalid("before", "use either after or before, not both")
	}
	if p.Limit, err = parseLimit(q); err != nil {
		return chat.PageQuery{}, err
	}
	return p, nil
}

// parseChatListQuery reads GET /v1/chats?changed_since=&after=&limit=; the
// chat service reads the after cursor.
func parseChatListQuery(q url.Values) (chat.ListQuery, error) {
	l := chat.ListQuery{After: q.Get("after")}
	var err error
	if l.Limit, err = parseLimit(q); err != nil {
		return chat.ListQuery{}, err
	}
	if s := q.Get("changed_since"); s != "" {
		if l.ChangedSince, err = chat.ParseSyncCursor(s); err != nil {
			return chat.ListQuery{}, err
		}
	}
	return l, nil
}

// parseGroupsQuery reads GET /v1/groups?after=&limit=: after is the last
// group id of the previous page.
func parseGroupsQuery(q url.Values) (after string, limit int, err error) {
	if limit, err = parseLimit(q); err != nil {
		return "", 0, err
	}
	after = q.Get("after")
	if after != "" && !ids.ValidUserID(after) { // group ids are shaped like user ids
		return "", 0, invalid("after", "after must be the last group id of the previous page")
	}
	return after, limit, nil
}

// parsePresenceIDs reads GET /v1/presence?ids=a,b,c (repeatable): 1 to 100
// ids, duplicates and blanks ignored. It returns the ones to look up, in
// the order asked: a string that is no user id is a user nobody may see,
// left out like one.
func parsePresenceIDs(q url.Values) ([]string, error) {
	var asked, out []string
	seen := map[string]bool{}
	for _, v := range q["ids"] {
		for id := range strings.SplitSeq(v, ",") {
			if id = strings.TrimSpace(id); id != "" && !seen[id] {
				seen[id] = true
				asked = append(asked, id)
				if ids.ValidUserID(id) {
					out = append(out, id)
				}
			}
		}
	}
	if len(asked) == 0 || len(asked) > maxPresenceIDs {
		return nil, invalid("ids", "ids must list 1 to 100 user ids")
	}
	return out, nil
}
