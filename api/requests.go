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

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// This file holds every decoder of client input the REST API has of its
// own: request bodies, query parameters, path parameters and headers. Each
// is a plain function of the raw input, so the handlers only wire them to
// the services, and each has a fuzz target (requests_fuzz_test.go).

// requestError is a refused request: its HTTP status, error code and the
// message for the client.
type requestError struct {
	status    int
	code, msg string
}

func (e *requestError) Error() string { return e.code + ": " + e.msg }

func invalidBody(msg string) error {
	return &requestError{http.StatusBadRequest, "invalid_body", msg}
}

func invalidQuery(msg string) error {
	return &requestError{http.StatusBadRequest, "invalid_query", msg}
}

// abortRequest answers a request refused with a requestError.
func abortRequest(c *gin.Context, err error) {
	re := &requestError{http.StatusBadRequest, "invalid_body", "request refused"}
	errors.As(err, &re)
	abort(c, re.status, re.code, re.msg)
}

// fail answers a refused request: a requestError as it says, any other
// error (the chat service's) as chatError does.
func (a *api) fail(c *gin.Context, err error) {
	var re *requestError
	if errors.As(err, &re) {
		abortRequest(c, err)
		return
	}
	a.chatError(c, err)
}

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
		return &requestError{http.StatusRequestEntityTooLarge, "payload_too_large", "request body is too large"}
	}
	return invalidBody("request body is not valid JSON for this endpoint: " + err.Error())
}

// refreshBody is POST /v1/auth/refresh.
type refreshBody struct {
	RefreshToken string `json:"refresh_token"`
}

func (b refreshBody) check() error {
	if b.RefreshToken == "" {
		return invalidBody("refresh_token is required")
	}
	return nil
}

// groupBody is POST /v1/groups; the groups service checks its fields.
type groupBody struct {
	Name    string   `json:"name"`
	Members []string `json:"members"`
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
		return invalidBody("user_ids must list at least one user")
	}
	return nil
}

// roleBody is PATCH /v1/groups/{id}/members/{user_id}.
type roleBody struct {
	Role store.Role `json:"role"`
}

// readBody is POST /v1/chats/{chat}/read.
type readBody struct {
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
		return chat.Envelope{}, &requestError{http.StatusBadRequest, "invalid_payload", "the Idempotency-Key header is required (it is the message's cmid)"}
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
		return chat.Envelope{}, &requestError{http.StatusForbidden, string(chat.CodeNotAuthorized), "not a member of this chat"}
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
		return deviceBody{}, &requestError{http.StatusBadRequest, "invalid_device_id", "device id must be 1 to 64 printable ASCII characters without / + #"}
	}
	var in deviceBody
	if err := decodeJSON(body, &in); err != nil {
		return deviceBody{}, err
	}
	switch in.Platform {
	case store.PlatformAndroid, store.PlatformIOS, store.PlatformWeb:
	default:
		return deviceBody{}, &requestError{http.StatusBadRequest, "invalid_platform", `platform must be "android", "ios" or "web"`}
	}
	in.PushToken = strings.TrimSpace(in.PushToken)
	// Control characters are in no FCM token, and PostgreSQL text cannot
	// hold NUL.
	if in.PushToken == "" || len(in.PushToken) > maxPushToken || !utf8.ValidString(in.PushToken) ||
		strings.IndexFunc(in.PushToken, unicode.IsControl) >= 0 {
		return deviceBody{}, &requestError{http.StatusBadRequest, "invalid_push_token", "push_token must be a non-empty FCM registration token"}
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
		return 0, invalidQuery("limit must be an integer from 1 to 200")
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
		return 0, invalidQuery(name + " must be a non-negative integer seq")
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
		return chat.PageQuery{}, invalidQuery("use either after or before, not both")
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
		return "", 0, invalidQuery("after must be the last group id of the previous page")
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
		return nil, invalidQuery("ids must list 1 to 100 user ids")
	}
	return out, nil
}
