package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Fuzz targets for the REST API's own decoders (requests.go). The services
// check what they are handed (usernames, group names, envelopes) and have
// fuzz targets of their own.

// wantRequestError fails unless err is a refusal with the status and
// one of the codes, and a message.
func wantRequestError(t *testing.T, what string, err error, status int, codes ...string) {
	t.Helper()
	e := refusal(err)
	if statusOf[e.Code] != status || !slices.Contains(codes, string(e.Code)) || e.Message == "" {
		t.Fatalf("%s: error %#v, want %d with one of %v", what, err, status, codes)
	}
	// The client's language is JSON: no Go type, struct or package names.
	for _, leak := range []string{"Go ", "struct", "uint64", "int64", "json: "} {
		if strings.Contains(e.Message, leak) {
			t.Fatalf("%s: message %q names Go internals (%q)", what, e.Message, leak)
		}
	}
}

// strictJSON is the body rule in plain encoding/json terms: json.Unmarshal
// takes exactly one value, and a Decoder refuses unknown fields.
func strictJSON(p []byte, v any) error {
	if err := json.Unmarshal(p, v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// bodyLimit stands for the server's cap on request bodies (limitBody).
const bodyLimit = 512

// decodeLimited decodes body as a handler does, behind a MaxBytesReader.
func decodeLimited(body []byte, v any) error {
	return decodeJSON(http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader(body)), bodyLimit), v)
}

// checkBody decodes body into a T as the handler does and holds the
// outcome against encoding/json's, then check's (the handler's own rule
// for that body, nil for none).
func checkBody[T any](t *testing.T, body []byte, check func(T) error) (T, bool) {
	t.Helper()
	var got, ref T
	err := decodeLimited(body, &got)
	refErr := strictJSON(body, &ref)
	if err != nil {
		if chat.CodeOf(err) == chat.CodeTooLarge {
			if len(body) <= bodyLimit {
				t.Fatalf("%q: 413 for %d bytes", body, len(body))
			}
			return got, false
		}
		wantRequestError(t, "decodeJSON", err, http.StatusBadRequest, "invalid_payload")
		if refErr == nil && len(body) <= bodyLimit {
			t.Fatalf("%q refused (%v), encoding/json accepts it", body, err)
		}
		return got, false
	}
	if refErr != nil {
		t.Fatalf("%q accepted, encoding/json: %v", body, refErr)
	}
	if !reflect.DeepEqual(got, ref) {
		t.Fatalf("%q: decoded %#v, encoding/json %#v", body, got, ref)
	}
	if check != nil {
		if err := check(got); err != nil {
			// A missing refresh token is unauthenticated, like a bad one.
			if chat.CodeOf(err) == chat.CodeUnauthenticated {
				wantRequestError(t, "check", err, http.StatusUnauthorized, "unauthenticated")
			} else {
				wantRequestError(t, "check", err, http.StatusBadRequest, "invalid_payload")
			}
			return got, false
		}
	}
	return got, true
}

func FuzzRequestBody(f *testing.F) {
	u := ids.NewUserID()
	seeds := []string{
		``, ` `, `null`, `[]`, `{}`, `{} {}`, `{}}`, `{}]`, `{"a":1}`, `"x"`, `{`, "{\"name\":\"\xff\"}",
		`{"username":"alice","password":"correct horse"}`,
		`{"Username":"alice","PASSWORD":"x"}`,
		`{"refresh_token":"eyJ.x.y"}`, `{"refresh_token":""}`,
		`{"name":"trip","members":["` + u + `"]}`, `{"name":"a\u0000b"}`, `{"members":null}`,
		`{"user_ids":["` + u + `"]}`, `{"user_ids":[]}`, `{"user_ids":[1]}`,
		`{"role":"admin"}`, `{"role":7}`,
		`{"seq":1}`, `{"seq":18446744073709551616}`, `{"seq":-1}`, `{"seq":1} {"seq":2}`,
		`{"read_seq":1}`, `{"read_seq":1,"seq":1}`, `{"read_seq":1,"seq":2}`, `{"read_seq":-1}`,
		`{"name":"x","user_ids":["` + u + `"],"members":[]}`,
		`{"name":"x"}` + strings.Repeat(" ", bodyLimit),
		`{"name":"` + strings.Repeat("x", bodyLimit) + `"}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		switch kind % 7 {
		case 0: // POST /v1/auth/register and /login
			checkBody[credentials](t, body, nil)
		case 1: // POST /v1/auth/refresh
			if b, ok := checkBody(t, body, refreshBody.check); ok && b.RefreshToken == "" {
				t.Fatalf("%q: accepted without a refresh token", body)
			}
		case 2: // POST /v1/groups
			checkBody(t, body, func(b groupBody) error { _, err := b.userIDs(); return err })
		case 3: // PATCH /v1/groups/{id}
			checkBody[renameBody](t, body, nil)
		case 4: // POST /v1/groups/{id}/members
			if b, ok := checkBody(t, body, membersBody.check); ok && len(b.UserIDs) == 0 {
				t.Fatalf("%q: accepted without user ids", body)
			}
		case 5: // PATCH /v1/groups/{id}/members/{user_id}
			checkBody[roleBody](t, body, nil)
		case 6: // POST /v1/chats/{chat}/read
			checkBody(t, body, func(b readBody) error { _, err := b.readSeq(); return err })
		}
	})
}

func FuzzSendRequest(f *testing.F) {
	me, other := ids.NewUserID(), ids.NewUserID()
	direct, group := chat.DirectChatID(me, other), chat.GroupChatID(other)
	for _, s := range [][3]string{
		{direct, "c1", `{"body":"hi"}`},
		{group, "c2", `{"type":"image","body":{"u":1},"reply_to":3}`},
		{chat.DirectChatID(me, me), "c3", `{"body":1}`},
		{direct, "", `{"body":"hi"}`},
		{chat.DirectChatID(other, ids.NewUserID()), "c4", `{"body":"hi"}`},
		{"d:" + max(me, other) + ":" + min(me, other), "c5", `{"body":"hi"}`},
		{"g:", "c6", `{"body":"hi"}`},
		{"g:\x00", "c7", `{"body":"hi"}`},
		{direct, "c8", `{"body":"hi","to":"user:x"}`},
		{direct, "c9", `{"body":"hi"} {"body":"again"}`},
		{direct, "c10", "{\"body\":\"\xff\"}"},
	} {
		f.Add(s[0], s[1], []byte(s[2]))
	}
	f.Fuzz(func(t *testing.T, chatID, cmid string, body []byte) {
		env, err := sendEnvelope(me, chatID, cmid, bytes.NewReader(body))
		if err != nil {
			switch code := chat.CodeOf(err); {
			case code == chat.CodeInternal:
				t.Fatalf("sendEnvelope: %#v", err)
			case cmid == "":
				wantRequestError(t, "no Idempotency-Key", err, http.StatusBadRequest, "invalid_payload")
			case code == chat.CodeNotFound:
				if chat.ValidChatID(chatID) {
					t.Fatalf("%q: %v; not_found is for what is no chat id", chatID, err)
				}
			case code == chat.CodeNotAuthorized:
				if !chat.ValidChatID(chatID) {
					t.Fatalf("%q is no chat id: %v, want not_found", chatID, err)
				}
				if a, b, ok := chat.DirectMembers(chatID); ok && (a == me || b == me) {
					t.Fatalf("%q is %s's chat, refused: %v", chatID, me, err)
				}
				if _, ok := chat.GroupID(chatID); ok {
					t.Fatalf("group chat %q refused before the pipeline: %v", chatID, err)
				}
			default:
				wantRequestError(t, "body", err, http.StatusBadRequest, "invalid_payload")
			}
			return
		}
		// The envelope names exactly the chat of the path.
		kind, id, _ := strings.Cut(env.To, ":")
		switch {
		case env.CMID != cmid || cmid == "":
			t.Fatalf("cmid %q became %q", cmid, env.CMID)
		case kind == "user" && chat.DirectChatID(me, id) != chatID,
			kind == "group" && chat.GroupChatID(id) != chatID,
			kind != "user" && kind != "group":
			t.Fatalf("%q: sends to %q", chatID, env.To)
		}
		var ref sendBody
		if err := strictJSON(body, &ref); err != nil || ref.Type != env.Type || !bytes.Equal(ref.Body, env.Body) || ref.ReplyTo != env.ReplyTo {
			t.Fatalf("%q: envelope %+v, encoding/json %+v, %v", body, env, ref, err)
		}
	})
}

func FuzzDeviceRequest(f *testing.F) {
	for _, s := range [][2]string{
		{"phone", `{"platform":"android","push_token":"fcm:abc-123_x"}`},
		{"tab-1", `{"platform":"ios","push_token":"  spaced  "}`},
		{"web", `{"platform":"web","push_token":"t"}`},
		{"phone", `{"platform":"android","push_token":"a\u0000b"}`},
		{"phone", `{"platform":"android","push_token":"a\u0085b"}`},
		{"phone", `{"platform":"android","push_token":" "}`},
		{"phone", `{"platform":"windows","push_token":"t"}`},
		{"phone", `{"platform":"Android","push_token":"t"}`},
		{"phone", `{"platform":"android","push_token":"` + strings.Repeat("t", maxPushToken+1) + `"}`},
		{"a/b", `{"platform":"android","push_token":"t"}`},
		{"", `{"platform":"android","push_token":"t"}`},
		{"é", `{"platform":"android","push_token":"t"}`},
		{strings.Repeat("d", ids.MaxDeviceID+1), `{"platform":"android","push_token":"t"}`},
	} {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, id string, body []byte) {
		d, err := decodeDevice(id, bytes.NewReader(body))
		if err != nil {
			wantRequestError(t, "decodeDevice", err, http.StatusBadRequest, "invalid_payload")
			if chat.FieldOf(err) == "device_id" && ids.ValidDeviceID(id) {
				t.Fatalf("device id %q refused", id)
			}
			return
		}
		if !ids.ValidDeviceID(id) || len(id) > ids.MaxDeviceID || strings.ContainsAny(id, "/+#") {
			t.Fatalf("device id %q accepted", id)
		}
		for _, c := range []byte(id) {
			if c <= ' ' || c >= 0x7f {
				t.Fatalf("device id %q accepted", id)
			}
		}
		switch d.Platform {
		case store.PlatformAndroid, store.PlatformIOS, store.PlatformWeb:
		default:
			t.Fatalf("platform %q accepted", d.Platform)
		}
		tok := d.PushToken
		if tok == "" || len(tok) > maxPushToken || tok != strings.TrimSpace(tok) || !utf8.ValidString(tok) ||
			strings.IndexFunc(tok, unicode.IsControl) >= 0 {
			t.Fatalf("push token %q accepted", tok)
		}
		var ref deviceBody
		if err := strictJSON(body, &ref); err != nil || ref.Platform != d.Platform || strings.TrimSpace(ref.PushToken) != tok {
			t.Fatalf("%q: decoded %+v, encoding/json %+v, %v", body, d, ref, err)
		}
	})
}

func FuzzQuery(f *testing.F) {
	u := ids.NewUserID()
	for _, s := range []string{
		"", "limit=1", "limit=200", "limit=0", "limit=201", "limit=-1", "limit=+5", "limit=1e2", "limit=9223372036854775808",
		"after", "after=", "after=0", "after=7&limit=2", "before=9", "after=1&before=2", "after=&before=", "after=-1",
		"before=18446744073709551615", "before=18446744073709551616", "after=%FF", "limit=1&limit=500",
		"changed_since=1733000000000", "changed_since=-1", "changed_since=x", "after=1733000000000:d:a:b",
		"after=" + u, "after=%00", "after=" + strings.ToUpper(u),
		"ids=" + u, "ids=" + u + ",%20" + u + ",,", "ids=&ids=", "ids=%00," + u, "ids=" + strings.Repeat("a,", 101),
		"%", "a=%zz&limit=3", ";limit=3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		// As net/http parses it for gin: malformed pairs are dropped.
		q := (&url.URL{RawQuery: raw}).Query()
		limit, limitErr := parseLimit(q)
		if limitErr != nil {
			wantRequestError(t, "parseLimit", limitErr, http.StatusBadRequest, "invalid_payload")
		} else if limit < 1 || limit > 200 || q.Get("limit") == "" && limit != defaultPage ||
			q.Get("limit") != "" && mustAtoi(t, q.Get("limit")) != limit {
			t.Fatalf("%q: limit %d", raw, limit)
		}

		p, err := parseHistoryQuery(q)
		switch {
		case err != nil:
			wantRequestError(t, "parseHistoryQuery", err, http.StatusBadRequest, "invalid_payload")
		case limitErr != nil || p.Limit != limit:
			t.Fatalf("%q: history limit %d, limit %d (%v)", raw, p.Limit, limit, limitErr)
		case p.Forward != q.Has("after") || p.Forward && q.Has("before"):
			t.Fatalf("%q: history %+v", raw, p)
		case q.Get("after") != "" && strconv.FormatUint(p.After, 10) != canonicalUint(q.Get("after")),
			q.Get("before") != "" && strconv.FormatUint(p.Before, 10) != canonicalUint(q.Get("before")):
			t.Fatalf("%q: history %+v", raw, p)
		}

		l, err := parseChatListQuery(q)
		if err != nil {
			wantRequestError(t, "parseChatListQuery", err, http.StatusBadRequest, "invalid_payload")
			if f := chat.FieldOf(err); f != "limit" && (f != "changed_since" || q.Get("changed_since") == "") {
				t.Fatalf("%q: %v blames %q", raw, err, f)
			}
		} else if l.Limit != limit || l.After != q.Get("after") ||
			q.Get("changed_since") == "" != l.ChangedSince.IsZero() || !l.ChangedSince.IsZero() && l.ChangedSince.UnixMilli() < 0 {
			t.Fatalf("%q: chat list %+v", raw, l)
		}

		dafter, dlimit, err := parseDeviceMessagesQuery(q)
		switch {
		case err != nil:
			wantRequestError(t, "parseDeviceMessagesQuery", err, http.StatusBadRequest, "invalid_payload")
		case limitErr == nil && q.Get("limit") != "" && dlimit != limit,
			q.Get("limit") == "" && dlimit != defaultDevicePage,
			dlimit < 1 || dlimit > 200,
			q.Get("after") != "" && strconv.FormatUint(dafter, 10) != canonicalUint(q.Get("after")):
			t.Fatalf("%q: device messages after %d limit %d", raw, dafter, dlimit)
		}

		after, glimit, err := parseGroupsQuery(q)
		if err != nil {
			wantRequestError(t, "parseGroupsQuery", err, http.StatusBadRequest, "invalid_payload")
		} else if glimit != limit || after != q.Get("after") || after != "" && !ids.ValidUserID(after) {
			t.Fatalf("%q: groups after %q limit %d", raw, after, glimit)
		}

		asked, err := parsePresenceIDs(q)
		if err != nil {
			wantRequestError(t, "parsePresenceIDs", err, http.StatusBadRequest, "invalid_payload")
			return
		}
		seen := map[string]bool{}
		for _, id := range asked {
			if !ids.ValidUserID(id) || seen[id] || !strings.Contains(strings.Join(q["ids"], ","), id) {
				t.Fatalf("%q: presence ids %q", raw, asked)
			}
			seen[id] = true
		}
	})
}

// canonicalUint is s as strconv.FormatUint writes the number it holds.
func canonicalUint(s string) string {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return "not a number: " + s
	}
	return strconv.FormatUint(v, 10)
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("limit %q accepted: %v", s, err)
	}
	return n
}
