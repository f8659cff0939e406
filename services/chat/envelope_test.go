package chat

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/store"
)

const testMaxBytes = 512

// padPayload returns a valid envelope to `to` exactly n bytes long.
func padPayload(t *testing.T, to string, n int) string {
	t.Helper()
	head := `{"to":"` + to + `","cmid":"pad","body":"`
	tail := `"}`
	fill := n - len(head) - len(tail)
	if fill < 0 {
		t.Fatalf("cannot pad to %d bytes", n)
	}
	return head + strings.Repeat("x", fill) + tail
}

// baseline is taken before a send expected to be refused.
type baseline struct {
	appends    int64
	deliveries int
	metrics    metricsSnapshot
}

func (f *fixture) baseline() baseline {
	return baseline{f.st.appendCalls.Load(), f.dlv.count(), f.met.snapshot()}
}

// checkRejected asserts a refused send left no trace: no append was even
// attempted, nothing was delivered, the chat is empty, and exactly one
// rejection with the right code (and no send) was observed.
func (f *fixture) checkRejected(t *testing.T, chat string, before baseline, want Code) {
	t.Helper()
	if n := f.st.appendCalls.Load() - before.appends; n != 0 {
		t.Errorf("AppendMessages called %d times for a refused send", n)
	}
	if n := f.dlv.count() - before.deliveries; n != 0 {
		t.Errorf("%d deliveries for a refused send", n)
	}
	if n := f.lastSeq(chat); n != 0 {
		t.Errorf("LastSeq(%s) = %d after a refused send", chat, n)
	}
	after := f.met.snapshot()
	if d := after.rejects[want] - before.metrics.rejects[want]; d != 1 {
		t.Errorf("ObserveReject(%q) called %d times, want 1", want, d)
	}
	if d := after.totalRejects() - before.metrics.totalRejects(); d != 1 {
		t.Errorf("ObserveReject called %d times in total, want 1", d)
	}
	for k, v := range after.sends {
		if v != before.metrics.sends[k] {
			t.Errorf("ObserveSend(%q) called for a refused send", k)
		}
	}
}

func TestSendPayloadRejects(t *testing.T) {
	f := newFixture(t, Options{MaxMessageBytes: testMaxBytes})
	a := f.user()
	unknown := ids.NewUserID()
	const b = "bbbbbbbbbbbbbbbbbbbb" // replaced by a fresh user per case

	cases := []struct {
		name    string
		payload string
		want    Code
	}{
		// cmid
		{"cmid missing", `{"to":"$B","body":"hi"}`, CodeInvalid},
		{"cmid empty", `{"to":"$B","cmid":"","body":"hi"}`, CodeInvalid},
		{"cmid 65 chars", `{"to":"$B","cmid":"` + strings.Repeat("c", 65) + `","body":"hi"}`, CodeInvalid},
		{"cmid with space", `{"to":"$B","cmid":"a b","body":"hi"}`, CodeInvalid},
		{"cmid with tab", `{"to":"$B","cmid":"a\tb","body":"hi"}`, CodeInvalid},
		{"cmid with DEL", `{"to":"$B","cmid":"a\u007fb","body":"hi"}`, CodeInvalid},
		{"cmid with NUL", `{"to":"$B","cmid":"a\u0000b","body":"hi"}`, CodeInvalid},
		{"cmid non-ASCII", `{"to":"$B","cmid":"é","body":"hi"}`, CodeInvalid},
		{"cmid not a string", `{"to":"$B","cmid":7,"body":"hi"}`, CodeInvalid},
		// type
		{"type system reserved", `{"to":"$B","cmid":"c","type":"system","body":"hi"}`, CodeInvalid},
		{"body lone high surrogate", `{"to":"$B","cmid":"c","body":"a\ud800"}`, CodeInvalid},
		{"body lone low surrogate", `{"to":"$B","cmid":"c","body":["\udc00"]}`, CodeInvalid},
		{"body high surrogate then a letter", `{"to":"$B","cmid":"c","body":{"k":"\ud800\u0041"}}`, CodeInvalid},
		{"body high surrogate in a key", `{"to":"$B","cmid":"c","body":{"\uD800x":1}}`, CodeInvalid},
		{"type System reserved whatever its case", `{"to":"$B","cmid":"c","type":"System","body":"hi"}`, CodeInvalid},
		{"type SYSTEM reserved whatever its case", `{"to":"$B","cmid":"c","type":"SYSTEM","body":"hi"}`, CodeInvalid},
		{"type with long s folds to system", `{"to":"$B","cmid":"c","type":"\u017Fystem","body":"hi"}`, CodeInvalid},
		{"type 33 chars", `{"to":"$B","cmid":"c","type":"` + strings.Repeat("t", 33) + `","body":"hi"}`, CodeInvalid},
		{"type with space", `{"to":"$B","cmid":"c","type":"a b","body":"hi"}`, CodeInvalid},
		{"type with newline", `{"to":"$B","cmid":"c","type":"a\nb","body":"hi"}`, CodeInvalid},
		{"type with NUL", `{"to":"$B","cmid":"c","type":"a\u0000b","body":"hi"}`, CodeInvalid},
		{"type with a C1 control", `{"to":"$B","cmid":"c","type":"a\u0085b","body":"hi"}`, CodeInvalid},
		// body
		{"body missing", `{"to":"$B","cmid":"c"}`, CodeInvalid},
		{"body null", `{"to":"$B","cmid":"c","body":null}`, CodeInvalid},
		{"body null spaced", `{"to":"$B","cmid":"c","body":  null  }`, CodeInvalid},
		{"body not UTF-8", "{\"to\":\"$B\",\"cmid\":\"c\",\"body\":\"\xff\"}", CodeInvalid},
		// to
		{"to missing", `{"cmid":"c","body":"hi"}`, CodeInvalid},
		{"to without prefix", `{"to":"` + b + `","cmid":"c","body":"hi"}`, CodeInvalid},
		{"to wrong prefix", `{"to":"users:` + b + `","cmid":"c","body":"hi"}`, CodeInvalid},
		{"to upper-case prefix", `{"to":"USER:` + b + `","cmid":"c","body":"hi"}`, CodeInvalid},
		{"to a group one is not in", `{"to":"group:x","cmid":"c","body":"hi"}`, CodeNotAuthorized},
		{"to an empty group id", `{"to":"group:","cmid":"c","body":"hi"}`, CodeInvalid},
		{"to unknown user", `{"to":"$U","cmid":"c","body":"hi"}`, CodeUnknownRecipient},
		{"to malformed user id", `{"to":"user:NotAnID","cmid":"c","body":"hi"}`, CodeUnknownRecipient},
		{"to empty user id", `{"to":"user:","cmid":"c","body":"hi"}`, CodeInvalid},
		// shape
		{"unknown field", `{"to":"$B","cmid":"c","body":"hi","too":"x"}`, CodeInvalid},
		{"wrong field type", `{"to":"$B","cmid":"c","body":"hi","reply_to":"1"}`, CodeInvalid},
		{"negative reply_to", `{"to":"$B","cmid":"c","body":"hi","reply_to":-1}`, CodeInvalid},
		{"second envelope", `{"to":"$B","cmid":"c","body":"hi"} {"to":"$B","cmid":"d","body":"hi"}`, CodeInvalid},
		{"trailing garbage", `{"to":"$B","cmid":"c","body":"hi"}x`, CodeInvalid},
		{"trailing number", `{"to":"$B","cmid":"c","body":"hi"} 1`, CodeInvalid},
		{"trailing close brace", `{"to":"$B","cmid":"c","body":"hi"}}`, CodeInvalid},
		{"trailing close bracket", `{"to":"$B","cmid":"c","body":"hi"}]`, CodeInvalid},
		{"truncated", `{"to":"$B","cmid":"c","body":"hi"`, CodeInvalid},
		{"not JSON", `hello`, CodeInvalid},
		{"empty payload", ``, CodeInvalid},
		{"array", `[]`, CodeInvalid},
		{"JSON null", `null`, CodeInvalid},
		{"empty object", `{}`, CodeInvalid},
		// size
		{"one byte over the limit", padPayload(t, "user:"+b, testMaxBytes+1), CodeTooLarge},
		{"far over the limit", padPayload(t, "user:"+b, 10*testMaxBytes), CodeTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A fresh recipient per case keeps the cases independent.
			to := f.user()
			chat := DirectChatID(a, to)
			payload := strings.NewReplacer("$B", "user:"+to, "$U", "user:"+unknown, b, to).Replace(tc.payload)
			before := f.baseline()
			res, _, err := sendPayload(context.Background(), f.svc, a, []byte(payload))
			expectCode(t, err, tc.want)
			if !isZero(res) {
				t.Errorf("Result = %+v, want zero", res)
			}
			f.checkRejected(t, chat, before, tc.want)
		})
	}
}

func TestSendRejects(t *testing.T) {
	f := newFixture(t, Options{MaxMessageBytes: testMaxBytes})
	a, b := f.user(), f.user()
	unknown := ids.NewUserID()
	chat := DirectChatID(a, b)
	ok := Envelope{To: "user:" + b, CMID: "c", Body: json.RawMessage(`"hi"`)}
	with := func(mod func(*Envelope)) Envelope { e := ok; mod(&e); return e }

	cases := []struct {
		name string
		env  Envelope
		want Code
	}{
		{"cmid empty", with(func(e *Envelope) { e.CMID = "" }), CodeInvalid},
		{"cmid 65 chars", with(func(e *Envelope) { e.CMID = strings.Repeat("c", 65) }), CodeInvalid},
		{"cmid with space", with(func(e *Envelope) { e.CMID = "a b" }), CodeInvalid},
		{"cmid control char", with(func(e *Envelope) { e.CMID = "a\x01" }), CodeInvalid},
		{"cmid high byte", with(func(e *Envelope) { e.CMID = "a\x80" }), CodeInvalid},
		{"type system", with(func(e *Envelope) { e.Type = "system" }), CodeInvalid},
		{"type 33 chars", with(func(e *Envelope) { e.Type = strings.Repeat("t", 33) }), CodeInvalid},
		{"type with tab", with(func(e *Envelope) { e.Type = "a\tb" }), CodeInvalid},
		{"type with DEL", with(func(e *Envelope) { e.Type = "a\x7f" }), CodeInvalid},
		{"type not UTF-8", with(func(e *Envelope) { e.Type = "a\xff" }), CodeInvalid},
		{"body not UTF-8", with(func(e *Envelope) { e.Body = json.RawMessage("\"\xc3\"") }), CodeInvalid},
		{"to a group id with NUL", with(func(e *Envelope) { e.To = "group:\x00" }), CodeNotAuthorized},
		{"body nil", with(func(e *Envelope) { e.Body = nil }), CodeInvalid},
		{"body blank", with(func(e *Envelope) { e.Body = json.RawMessage(" \n\t") }), CodeInvalid},
		{"body null", with(func(e *Envelope) { e.Body = json.RawMessage("null") }), CodeInvalid},
		{"body spaced null", with(func(e *Envelope) { e.Body = json.RawMessage("  null\n") }), CodeInvalid},
		{"to empty", with(func(e *Envelope) { e.To = "" }), CodeInvalid},
		{"to bare id", with(func(e *Envelope) { e.To = b }), CodeInvalid},
		{"to a group one is not in", with(func(e *Envelope) { e.To = "group:x" }), CodeNotAuthorized},
		{"to group empty", with(func(e *Envelope) { e.To = "group:" }), CodeInvalid},
		{"to unknown user", with(func(e *Envelope) { e.To = "user:" + unknown }), CodeUnknownRecipient},
		{"to malformed user id", with(func(e *Envelope) { e.To = "user:" + strings.ToUpper(b) }), CodeUnknownRecipient},
		{"to user id too long", with(func(e *Envelope) { e.To = "user:" + b + "0" }), CodeUnknownRecipient},
		{"body one byte over", with(func(e *Envelope) {
			e.Body = json.RawMessage(`"` + strings.Repeat("x", testMaxBytes-1) + `"`)
		}), CodeTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.baseline()
			env := tc.env
			res, err := f.svc.Send(context.Background(), a, env)
			expectCode(t, err, tc.want)
			if !isZero(res) {
				t.Errorf("Result = %+v, want zero", res)
			}
			f.checkRejected(t, chat, before, tc.want)
		})
	}
}

// TestSendAccepts covers the envelopes that must pass, and what is stored
// for them.
func TestSendAccepts(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	f := newFixture(t, Options{MaxMessageBytes: testMaxBytes, Now: func() time.Time { return now }})
	a, b := f.user(), f.user()
	chat := DirectChatID(a, b)
	cmid64 := strings.Repeat("!", 32) + strings.Repeat("~", 32)

	type want struct {
		cmid, typ, body string
		replyTo         uint64
	}
	cases := []struct {
		name    string
		payload string    // sent with sendPayload when set
		env     *Envelope // sent with Send otherwise
		want    want
	}{
		{name: "default type", payload: `{"to":"user:` + b + `","cmid":"p1","body":"hi"}`,
			want: want{"p1", "text", `"hi"`, 0}},
		{name: "explicit type and reply_to", payload: `{"to":"user:` + b + `","cmid":"p2","type":"image","body":{"u":"x"},"reply_to":1}`,
			want: want{"p2", "image", `{"u":"x"}`, 1}},
		{name: "64-char cmid, 32-char type", payload: `{"to":"user:` + b + `","cmid":"` + cmid64 + `","type":"` + strings.Repeat("t", 32) + `","body":0}`,
			want: want{cmid64, strings.Repeat("t", 32), `0`, 0}},
		{name: "surrounding whitespace", payload: " \n{\"to\":\"user:" + b + "\",\"cmid\":\"p4\",\"body\":  [1, 2]  }\n\t",
			want: want{"p4", "text", `[1, 2]`, 0}},
		{name: "falsy bodies are bodies", payload: `{"to":"user:` + b + `","cmid":"p5","body":false}`,
			want: want{"p5", "text", `false`, 0}},
		{name: "empty string body", payload: `{"to":"user:` + b + `","cmid":"p6","body":""}`,
			want: want{"p6", "text", `""`, 0}},
		{name: "escaped surrogate pair", payload: `{"to":"user:` + b + `","cmid":"p7","body":"\ud83d\uDE00 \u00e9"}`,
			want: want{"p7", "text", `"\ud83d\uDE00 \u00e9"`, 0}},
		{name: "escaped backslash before u", payload: `{"to":"user:` + b + `","cmid":"p8","body":"\\ud800"}`,
			want: want{"p8", "text", `"\\ud800"`, 0}},
		{name: "payload exactly at the limit", payload: padPayload(t, "user:"+b, testMaxBytes),
			want: want{"pad", "text", `"` + strings.Repeat("x", testMaxBytes-len(`{"to":"user:`+b+`","cmid":"pad","body":""}`)) + `"`, 0}},
		{name: "Send default type", env: &Envelope{To: "user:" + b, CMID: "s1", Body: json.RawMessage(`{"k":1}`)},
			want: want{"s1", "text", `{"k":1}`, 0}},
		{name: "Send trims body", env: &Envelope{To: "user:" + b, CMID: "s2", Type: "note", Body: json.RawMessage("  \"x\"\n")},
			want: want{"s2", "note", `"x"`, 0}},
		{name: "Send body exactly at limit after trim", env: &Envelope{To: "user:" + b, CMID: "s3",
			Body: json.RawMessage("  \"" + strings.Repeat("y", testMaxBytes-2) + "\"  ")},
			want: want{"s3", "text", `"` + strings.Repeat("y", testMaxBytes-2) + `"`, 0}},
	}
	var seq uint64
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var (
				res Result
				err error
			)
			if tc.env != nil {
				res, err = f.svc.Send(context.Background(), a, *tc.env)
			} else {
				var env Envelope
				res, env, err = sendPayload(context.Background(), f.svc, a, []byte(tc.payload))
				if err == nil && env.Type != tc.want.typ {
					t.Errorf("returned Envelope.Type = %q, want %q", env.Type, tc.want.typ)
				}
			}
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			seq++
			m := res.Message
			if res.Duplicate || m.Chat != chat || m.Seq != seq || m.From != a || m.CMID != tc.want.cmid ||
				m.Type != tc.want.typ || string(m.Body) != tc.want.body || m.ReplyTo != tc.want.replyTo ||
				m.ID == 0 || !m.SentAt.Equal(now) {
				t.Fatalf("Result = %+v, want chat %s seq %d %+v sent at %v", res, chat, seq, tc.want, now)
			}
			page, err := f.svc.History(context.Background(), b, chat, store.HistoryQuery{Before: seq + 1, Limit: 1})
			if err != nil || len(page) != 1 {
				t.Fatalf("History = %v, %v", page, err)
			}
			got := page[0]
			if got.Seq != seq || got.ID != m.ID || got.From != a || got.CMID != m.CMID || got.Type != m.Type ||
				string(got.Body) != tc.want.body || got.ReplyTo != m.ReplyTo || !got.SentAt.Equal(now) {
				t.Fatalf("stored %+v, want %+v", got, m)
			}
		})
	}
	if got := f.lastSeq(chat); got != seq {
		t.Fatalf("LastSeq = %d, want %d", got, seq)
	}
	if n := f.dlv.count(); n != int(seq) {
		t.Fatalf("%d deliveries, want %d", n, seq)
	}
}

func isZero(r Result) bool {
	m := r.Message
	return !r.Duplicate && m.Chat == "" && m.Seq == 0 && m.ID == 0 && m.From == "" && m.CMID == "" &&
		m.Type == "" && m.Body == nil && m.ReplyTo == 0 && m.SentAt.IsZero()
}

func TestView(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 8_000_000, time.FixedZone("X", 3600))
	cases := []struct {
		name string
		m    store.Message
		body string
	}{
		{"body kept", store.Message{Chat: "d:a:b", Seq: 3, ID: 0xabc, From: "a", CMID: "c", Type: "text", Body: []byte(`{"x":1}`), ReplyTo: 2, SentAt: at}, `{"x":1}`},
		{"empty body is null", store.Message{Chat: "d:a:b", Seq: 1, ID: 1, From: "a", Type: "text", SentAt: at}, `null`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := View(tc.m)
			if v.Chat != tc.m.Chat || v.Seq != tc.m.Seq || v.ID != ids.Format(tc.m.ID) || v.From != tc.m.From ||
				v.CMID != tc.m.CMID || v.Type != tc.m.Type || string(v.Body) != tc.body || v.ReplyTo != tc.m.ReplyTo {
				t.Fatalf("View = %+v", v)
			}
			if v.SentAt != "2025-03-04T04:06:07.008Z" {
				t.Fatalf("SentAt = %q", v.SentAt)
			}
			if _, err := json.Marshal(v); err != nil {
				t.Fatalf("marshal: %v", err)
			}
		})
	}
}
