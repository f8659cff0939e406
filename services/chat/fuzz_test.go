package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/mqchat/mqchat/internal/ids"
)

// The fuzz targets of this package cover what clients send it directly:
// the send envelope, chat ids and the paging cursors. scripts/fuzz.sh runs
// them for a bounded time; `go test` runs their seeds (f.Add and
// testdata/fuzz) as ordinary tests.

// wantRefusal fails unless err is a refusal with code want and a message
// for the client: never a panic, never an internal error.
func wantRefusal(t *testing.T, what string, err error, want Code) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Code != want || e.Message == "" {
		t.Fatalf("%s: error %#v, want a %s refusal with a message", what, err, want)
	}
}

// strictDecode is the envelope decoding rule in plain encoding/json terms:
// json.Unmarshal takes exactly one JSON value, and a Decoder refuses
// unknown fields.
func strictDecode(p []byte, v any) error {
	if err := json.Unmarshal(p, v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// checkEnvelope asserts the invariants of an accepted envelope.
func checkEnvelope(t *testing.T, payload []byte, env Envelope) {
	t.Helper()
	if !ValidCMID(env.CMID) {
		t.Fatalf("%q: accepted cmid %q", payload, env.CMID)
	}
	if c, err := env.change(); err != nil || c != nil {
		checkChangeEnvelope(t, payload, env)
		return
	}
	if env.Type == "" || len(env.Type) > maxType || env.Type == "system" || !utf8.ValidString(env.Type) ||
		strings.IndexFunc(env.Type, func(r rune) bool { return unicode.IsControl(r) || r == ' ' }) >= 0 {
		t.Fatalf("%q: accepted type %q", payload, env.Type)
	}
	body := []byte(env.Body)
	if len(body) == 0 || !json.Valid(body) || !utf8.Valid(body) || string(body) == "null" ||
		len(bytes.TrimSpace(body)) != len(body) {
		t.Fatalf("%q: accepted body %q", payload, body)
	}
	kind, id, _ := strings.Cut(env.To, ":")
	if kind != "user" && kind != "group" || id == "" {
		t.Fatalf("%q: accepted to %q", payload, env.To)
	}
}

// checkChangeEnvelope asserts the invariants of an accepted change.
func checkChangeEnvelope(t *testing.T, payload []byte, env Envelope) {
	t.Helper()
	c, err := env.change()
	if err != nil || c.Target == 0 || env.Type != "" || env.ReplyTo != 0 {
		t.Fatalf("%q: accepted change %+v (%v) with type %q, reply_to %d", payload, c, err, env.Type, env.ReplyTo)
	}
	body := []byte(env.Body)
	switch c.Kind {
	case "edit":
		if len(body) == 0 || !json.Valid(body) || string(body) == "null" {
			t.Fatalf("%q: accepted edit body %q", payload, body)
		}
	case "react", "unreact":
		if len(c.Emoji) == 0 || len(c.Emoji) > maxEmojiBytes || !utf8.ValidString(c.Emoji) ||
			strings.IndexFunc(c.Emoji, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) || r == '/' }) >= 0 {
			t.Fatalf("%q: accepted emoji %q", payload, c.Emoji)
		}
	}
	if c.Kind != "edit" && len(bytes.TrimSpace(body)) != 0 && string(bytes.TrimSpace(body)) != "null" {
		t.Fatalf("%q: accepted a %s with body %q", payload, c.Kind, body)
	}
	if m := messageOf("u", "c", env); m.Change == nil || *m.Change != *c || m.Type == "" || c.Kind != "edit" && m.Body != nil {
		t.Fatalf("%q: stored as %+v", payload, m)
	}
}

// canonicalBody is a JSON value as encoding/json writes it inside a
// message: compact, HTML-escaped.
func canonicalBody(t *testing.T, raw []byte) string {
	t.Helper()
	var compact, escaped bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		t.Fatalf("compact %q: %v", raw, err)
	}
	json.HTMLEscape(&escaped, compact.Bytes())
	return escaped.String()
}

func FuzzDecodeEnvelope(f *testing.F) {
	u := ids.NewUserID()
	for _, s := range []string{
		`{"to":"user:` + u + `","cmid":"c1","body":"hi"}`,
		`{"to":"group:` + u + `","cmid":"c2","type":"image","body":{"url":"x","w":3},"reply_to":7}`,
		" \n{\"to\":\"user:" + u + "\",\"cmid\":\"c3\",\"body\":  [1, 2.5e3, true, null]  }\n\t",
		`{"to":"user:` + u + `","cmid":"c4","body":"<a>\u2028&"}`,
		`{"to":"user:` + u + `","cmid":"c5","body":"x","to":"group:` + u + `"}`, // a repeated key: the last wins
		`{"TO":"user:` + u + `","CMID":"c6","Body":"case-insensitive keys"}`,
		`{"to":"user:` + u + `","cmid":"c7","type":"a\u0000b","body":"x"}`,
		`{"to":"user:` + u + `","cmid":"c8","type":"\u0085","body":"x"}`,
		"{\"to\":\"user:" + u + "\",\"cmid\":\"c9\",\"body\":\"\xff\"}",
		`{"to":"user:` + u + `","cmid":"c","body":"hi"} {"to":"user:x","cmid":"d","body":"hi"}`,
		`{"to":"user:` + u + `","cmid":"c","body":"hi"}}`,
		`{"to":"user:` + u + `","cmid":"c","body":"hi","reply_to":-1}`,
		`{"to":"user:` + u + `","cmid":"c","body":"hi","reply_to":18446744073709551616}`,
		`{"to":"user:","cmid":"c","body":"hi"}`,
		`{"to":"group:x","cmid":"a b","body":"hi"}`,
		`{"to":"user:x","cmid":"c","type":"system","body":"hi"}`,
		`{"to":"user:x","cmid":"c","body":null}`,
		`{"to":"user:x","cmid":"c","body":"hi","too":1}`,
		`[]`, `null`, ``, `{`, `"x"`,
		`{"to":"user:` + u + `","cmid":"e","edit":{"seq":3},"body":"fixed"}`,
		`{"to":"group:` + u + `","cmid":"d","delete":{"seq":3}}`,
		`{"to":"group:` + u + `","cmid":"d","delete":{"seq":3},"body":null}`,
		`{"to":"user:` + u + `","cmid":"r","react":{"seq":1,"emoji":"👍🏽"}}`,
		`{"to":"user:` + u + `","cmid":"r","unreact":{"seq":1,"emoji":"a b"}}`,
		`{"to":"user:` + u + `","cmid":"r","react":{"seq":1,"emoji":"x"},"delete":{"seq":1}}`,
		`{"to":"user:` + u + `","cmid":"e","edit":{"seq":0},"body":"x"}`,
		`{"to":"user:` + u + `","cmid":"e","edit":null,"body":"x"}`,
		`{"to":"user:` + u + `","cmid":"e","type":"Reaction","body":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		env, err := decodeEnvelope(payload)
		if err != nil {
			wantRefusal(t, "decodeEnvelope", err, CodeInvalid)
			return
		}
		checkEnvelope(t, payload, env)

		// encoding/json reads the same envelope.
		var ref Envelope
		if err := strictDecode(payload, &ref); err != nil {
			t.Fatalf("%q accepted, encoding/json: %v", payload, err)
		}
		if ref.To != env.To || ref.CMID != env.CMID || ref.ReplyTo != env.ReplyTo ||
			!bytes.Equal(bytes.TrimSpace(ref.Body), env.Body) || ref.Type != env.Type && !(ref.Type == "" && env.Type == "text") {
			t.Fatalf("%q: decoded %+v, encoding/json %+v", payload, env, ref)
		}

		// What the server would encode decodes to the same envelope.
		enc, err := json.Marshal(env)
		if err != nil {
			t.Fatalf("encode %+v: %v", env, err)
		}
		again, err := decodeEnvelope(enc)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", enc, err)
		}
		c, _ := env.change()
		c2, _ := again.change()
		if (c == nil) != (c2 == nil) || c != nil && *c != *c2 {
			t.Fatalf("round trip: change %+v became %+v", c, c2)
		}
		if c != nil && c.Kind != "edit" {
			return // no body to compare: absent and null are alike
		}
		if again.To != env.To || again.CMID != env.CMID || again.Type != env.Type || again.ReplyTo != env.ReplyTo ||
			string(again.Body) != canonicalBody(t, env.Body) {
			t.Fatalf("round trip: %+v became %+v", env, again)
		}
	})
}

func FuzzChatID(f *testing.F) {
	a, b := ids.NewUserID(), ids.NewUserID()
	f.Add(DirectChatID(a, b), a, b)
	f.Add(DirectChatID(a, a), a, a)
	f.Add(GroupChatID(a), a, "")
	f.Add("d:"+max(a, b)+":"+min(a, b), "x", "y")
	f.Add("d:"+a+":z\x00", a, "z\x00")
	f.Add("g:\xff", "", "\xff")
	f.Add("d:a:b:c", "a:b", "c")
	f.Add("g:", ":", "")
	f.Fuzz(func(t *testing.T, s, x, y string) {
		a, b, direct := DirectMembers(s)
		gid, group := GroupID(s)
		if direct && group {
			t.Fatalf("%q is both a 1:1 and a group chat id", s)
		}
		if direct && (a == "" || b == "" || b < a || DirectChatID(a, b) != s || DirectChatID(b, a) != s) {
			t.Fatalf("DirectMembers(%q) = %q, %q", s, a, b)
		}
		if group && (gid == "" || strings.Contains(gid, ":") || GroupChatID(gid) != s) {
			t.Fatalf("GroupID(%q) = %q", s, gid)
		}
		wantValid := direct && ids.ValidUserID(a) && ids.ValidUserID(b) || group && ids.ValidUserID(gid)
		if ValidChatID(s) != wantValid {
			t.Fatalf("ValidChatID(%q) = %v", s, !wantValid)
		}
		for _, u := range []string{a, b, gid} {
			if ValidChatID(s) && IsDirectMember(s, u) && !ids.ValidUserID(u) {
				t.Fatalf("%q: member %q is not a user id", s, u)
			}
		}

		// Ids made from two strings parse back when neither holds the
		// separator, and are valid exactly when both are user ids.
		id := DirectChatID(x, y)
		p, q, ok := DirectMembers(id)
		plain := x != "" && y != "" && !strings.Contains(x, ":") && !strings.Contains(y, ":")
		if ok != plain || ok && (p != min(x, y) || q != max(x, y)) {
			t.Fatalf("DirectMembers(DirectChatID(%q, %q)) = %q, %q, %v", x, y, p, q, ok)
		}
		if ValidChatID(id) != (ids.ValidUserID(x) && ids.ValidUserID(y)) {
			t.Fatalf("ValidChatID(%q) = %v", id, ValidChatID(id))
		}
		if ok && (!IsDirectMember(id, x) || !IsDirectMember(id, y)) {
			t.Fatalf("%q and %q are not members of %q", x, y, id)
		}
		g, ok := GroupID(GroupChatID(x))
		if ok != (x != "" && !strings.Contains(x, ":")) || ok && g != x {
			t.Fatalf("GroupID(GroupChatID(%q)) = %q, %v", x, g, ok)
		}
	})
}

func FuzzCursors(f *testing.F) {
	for _, s := range []string{
		"0", "1733000000000", "-1", "+5", "9223372036854775807", "-9223372036854775808",
		"9223372036854775808", "", " 1", "1e3", "0x10", "1733000000000:d:a:b", "-5:g:x", "1:", ":x", "x:y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		at, err := ParseSyncCursor(s)
		if err != nil {
			wantRefusal(t, "ParseSyncCursor("+strconv.Quote(s)+")", err, CodeInvalid)
		} else {
			if at.UnixMilli() < 0 {
				t.Fatalf("ParseSyncCursor(%q) = %v, before 1970", s, at)
			}
			// The cursor the server writes for that instant reads back to it.
			again, err := ParseSyncCursor(strconv.FormatInt(at.UnixMilli(), 10))
			if err != nil || !again.Equal(at) {
				t.Fatalf("ParseSyncCursor(%q) = %v, rewritten %v, %v", s, at, again, err)
			}
		}

		at, chatID, ok := parseListCursor(s)
		if !ok {
			return
		}
		if chatID == "" || !strings.HasSuffix(s, ":"+chatID) {
			t.Fatalf("parseListCursor(%q) = %v, %q", s, at, chatID)
		}
		// ChatList writes its next cursor this way.
		next := strconv.FormatInt(at.UnixMilli(), 10) + ":" + chatID
		at2, chat2, ok := parseListCursor(next)
		if !ok || !at2.Equal(at) || chat2 != chatID {
			t.Fatalf("parseListCursor(%q) = %v, %q; its rewrite %q = %v, %q, %v", s, at, chatID, next, at2, chat2, ok)
		}
	})
}
