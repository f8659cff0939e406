package chat

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/store"
)

// clock is a settable Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// lifecycleFixture is a service with a 1:1 chat a-b and a group g whose
// owner is a, admin c and members b and d.
type lifecycleFixture struct {
	*fixture
	clk        *clock
	a, b, c, d string
	gid        string
	direct     string
	group      string
	n          int
}

func newLifecycleFixture(t *testing.T, opts Options) *lifecycleFixture {
	// Near the real time: dedupe records expire by the store's clock.
	clk := &clock{now: time.Now().UTC().Truncate(time.Millisecond)}
	opts.Now = clk.Now
	f := &lifecycleFixture{fixture: newFixture(t, opts), clk: clk}
	f.a, f.b, f.c, f.d = f.user(), f.user(), f.user(), f.user()
	f.gid = ids.NewUserID()
	f.direct, f.group = DirectChatID(f.a, f.b), GroupChatID(f.gid)
	ctx := context.Background()
	members := []store.Member{
		{GroupID: f.gid, UserID: f.a, Role: store.RoleOwner, JoinedAt: clk.now},
		{GroupID: f.gid, UserID: f.b, Role: store.RoleMember, JoinedAt: clk.now},
		{GroupID: f.gid, UserID: f.c, Role: store.RoleAdmin, JoinedAt: clk.now},
		{GroupID: f.gid, UserID: f.d, Role: store.RoleMember, JoinedAt: clk.now},
	}
	if err := f.st.CreateGroup(ctx, store.Group{ID: f.gid, Name: "g", CreatedBy: f.a, CreatedAt: clk.now}, members); err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	return f
}

// do publishes payload (with "$CMID" replaced by a fresh cmid) from uid,
// as the MQTT hook does.
func (f *lifecycleFixture) do(uid, payload string) (Result, error) {
	f.n++
	payload = strings.ReplaceAll(payload, "$CMID", "c"+string(rune('a'+f.n%26))+ids.NewUserID()[:8])
	res, _, err := sendPayload(context.Background(), f.svc, uid, []byte(payload))
	return res, err
}

func (f *lifecycleFixture) must(uid, payload string) Result {
	f.t.Helper()
	res, err := f.do(uid, payload)
	if err != nil {
		f.t.Fatalf("%s: %v", payload, err)
	}
	return res
}

// view is the message at seq as uid reads it in history.
func (f *lifecycleFixture) view(uid, chat string, seq uint64) Delivered {
	f.t.Helper()
	page, err := f.svc.HistoryPage(context.Background(), uid, chat, PageQuery{Before: seq + 1, Limit: 1})
	if err != nil || len(page.Messages) != 1 || page.Messages[0].Seq != seq {
		f.t.Fatalf("HistoryPage(%s, %d) = %+v, %v", chat, seq, page, err)
	}
	return page.Messages[0]
}

func TestEditDeleteRefusals(t *testing.T) {
	f := newLifecycleFixture(t, Options{EditWindow: time.Hour})
	to := `"user:` + f.b + `"`
	m := f.must(f.a, `{"to":`+to+`,"cmid":"$CMID","body":"hello"}`).Message
	gm := f.must(f.b, `{"to":"group:`+f.gid+`","cmid":"$CMID","body":"in the group"}`).Message
	sys, err := f.svc.SendSystem(context.Background(), f.gid, f.a, []byte(`{"event":"x"}`), []string{f.a})
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name    string
		from    string
		payload string
		want    Code
		msg     string
	}{
		{"edit by the other user", f.b, `{"to":"user:` + f.a + `","cmid":"$CMID","edit":{"seq":1},"body":"x"}`, CodeNotAuthorized, "sender"},
		{"edit without body", f.a, `{"to":` + to + `,"cmid":"$CMID","edit":{"seq":1}}`, CodeInvalid, "body"},
		{"edit of seq 0", f.a, `{"to":` + to + `,"cmid":"$CMID","edit":{"seq":0},"body":"x"}`, CodeInvalid, "edit.seq"},
		{"edit of a seq not yet used", f.a, `{"to":` + to + `,"cmid":"$CMID","edit":{"seq":9},"body":"x"}`, CodeNotFound, "edit.seq"},
		{"edit with a type", f.a, `{"to":` + to + `,"cmid":"$CMID","type":"text","edit":{"seq":1},"body":"x"}`, CodeInvalid, "type"},
		{"edit with reply_to", f.a, `{"to":` + to + `,"cmid":"$CMID","reply_to":1,"edit":{"seq":1},"body":"x"}`, CodeInvalid, "reply_to"},
		{"edit and delete at once", f.a, `{"to":` + to + `,"cmid":"$CMID","edit":{"seq":1},"delete":{"seq":1},"body":"x"}`, CodeInvalid, "at most one"},
		{"edit with an unknown field", f.a, `{"to":` + to + `,"cmid":"$CMID","edit":{"seq":1,"at":2},"body":"x"}`, CodeInvalid, "send envelope"},
		{"delete with a body", f.a, `{"to":` + to + `,"cmid":"$CMID","delete":{"seq":1},"body":"x"}`, CodeInvalid, "body"},
		{"delete by the other user of a 1:1 chat", f.b, `{"to":"user:` + f.a + `","cmid":"$CMID","delete":{"seq":1}}`, CodeNotAuthorized, "sender"},
		{"delete by a plain group member", f.d, `{"to":"group:` + f.gid + `","cmid":"$CMID","delete":{"seq":` + u(gm.Seq) + `}}`, CodeNotAuthorized, "admin"},
		{"edit of a system message", f.a, `{"to":"group:` + f.gid + `","cmid":"$CMID","edit":{"seq":` + u(sys.Seq) + `},"body":"x"}`, CodeInvalid, "system"},
		{"react with a space", f.b, `{"to":"user:` + f.a + `","cmid":"$CMID","react":{"seq":1,"emoji":"a b"}}`, CodeInvalid, "react.emoji"},
		{"react with a slash", f.b, `{"to":"user:` + f.a + `","cmid":"$CMID","react":{"seq":1,"emoji":"a/b"}}`, CodeInvalid, "react.emoji"},
		{"react without emoji", f.b, `{"to":"user:` + f.a + `","cmid":"$CMID","react":{"seq":1}}`, CodeInvalid, "react.emoji"},
		{"react with a bidi override", f.b, `{"to":"user:` + f.a + `","cmid":"$CMID","react":{"seq":1,"emoji":"\u202e"}}`, CodeInvalid, "react.emoji"},
		{"react with 33 bytes", f.b, `{"to":"user:` + f.a + `","cmid":"$CMID","unreact":{"seq":1,"emoji":"` + strings.Repeat("x", 33) + `"}}`, CodeInvalid, "unreact.emoji"},
		{"react by an outsider", f.c, `{"to":"group:` + f.gid + `x","cmid":"$CMID","react":{"seq":1,"emoji":"x"}}`, CodeNotAuthorized, "member"},
		{"an ordinary message typed edit", f.a, `{"to":` + to + `,"cmid":"$CMID","type":"Edit","body":"x"}`, CodeInvalid, "reserved"},
		{"an ordinary message typed reaction", f.a, `{"to":` + to + `,"cmid":"$CMID","type":"reaction","body":"x"}`, CodeInvalid, "reserved"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.lastSeq(f.direct) + f.lastSeq(f.group)
			_, err := f.do(tc.from, tc.payload)
			expectCode(t, err, tc.want)
			if !strings.Contains(MessageOf(err), tc.msg) {
				t.Fatalf("message %q does not mention %q", MessageOf(err), tc.msg)
			}
			if after := f.lastSeq(f.direct) + f.lastSeq(f.group); after != before {
				t.Fatalf("a refused change stored a message (%d -> %d)", before, after)
			}
		})
	}

	t.Run("edit window", func(t *testing.T) {
		f.clk.advance(59 * time.Minute)
		e := f.must(f.a, `{"to":`+to+`,"cmid":"$CMID","edit":{"seq":`+u(m.Seq)+`},"body":"hello again"}`).Message
		f.clk.advance(2 * time.Minute)
		_, err := f.do(f.a, `{"to":`+to+`,"cmid":"$CMID","edit":{"seq":`+u(m.Seq)+`},"body":"too late"}`)
		expectCode(t, err, CodeConflict)
		if !strings.Contains(MessageOf(err), "edit window passed") {
			t.Fatalf("message %q", MessageOf(err))
		}
		v := f.view(f.b, f.direct, m.Seq)
		if string(v.Body) != `"hello again"` || v.EditedAt != e.SentAt.UTC().Format(SentAtLayout) {
			t.Fatalf("edited view = body %s edited_at %q, want the edit's body and %s", v.Body, v.EditedAt, e.SentAt)
		}
	})

	t.Run("deleted message", func(t *testing.T) {
		f.must(f.a, `{"to":`+to+`,"cmid":"$CMID","delete":{"seq":`+u(m.Seq)+`}}`)
		_, err := f.do(f.a, `{"to":`+to+`,"cmid":"$CMID","edit":{"seq":`+u(m.Seq)+`},"body":"x"}`)
		expectCode(t, err, CodeConflict)
		_, err = f.do(f.b, `{"to":"user:`+f.a+`","cmid":"$CMID","react":{"seq":`+u(m.Seq)+`,"emoji":"👍"}}`)
		expectCode(t, err, CodeConflict)
		if !strings.Contains(MessageOf(err), "message deleted") {
			t.Fatalf("message %q", MessageOf(err))
		}
	})
}

func TestEditsTurnedOff(t *testing.T) {
	f := newLifecycleFixture(t, Options{EditWindow: -1})
	f.must(f.a, `{"to":"user:`+f.b+`","cmid":"$CMID","body":"hello"}`)
	_, err := f.do(f.a, `{"to":"user:`+f.b+`","cmid":"$CMID","edit":{"seq":1},"body":"x"}`)
	expectCode(t, err, CodeConflict)
	// Deletes need no window.
	f.must(f.a, `{"to":"user:`+f.b+`","cmid":"$CMID","delete":{"seq":1}}`)
}

func TestDeleteTombstone(t *testing.T) {
	f := newLifecycleFixture(t, Options{})
	g := `"group:` + f.gid + `"`
	m := f.must(f.b, `{"to":`+g+`,"cmid":"$CMID","body":"secret words"}`).Message
	f.must(f.b, `{"to":`+g+`,"cmid":"$CMID","edit":{"seq":`+u(m.Seq)+`},"body":"more secret words"}`)
	f.must(f.d, `{"to":`+g+`,"cmid":"$CMID","react":{"seq":`+u(m.Seq)+`,"emoji":"👍"}}`)
	reply := f.must(f.d, `{"to":`+g+`,"cmid":"$CMID","reply_to":`+u(m.Seq)+`,"body":"what?"}`).Message
	if p := f.view(f.d, f.group, reply.Seq).ReplyToPreview; p == nil || p.Excerpt == nil || *p.Excerpt != "more secret words" || p.From != f.b {
		t.Fatalf("preview before delete = %+v", p)
	}

	// An admin deletes a member's message; deleting it again is answered
	// without storing anything.
	del := f.must(f.c, `{"to":`+g+`,"cmid":"$CMID","delete":{"seq":`+u(m.Seq)+`}}`)
	if del.Duplicate || del.Message.Change == nil || del.Message.Type != TypeDelete {
		t.Fatalf("delete = %+v", del)
	}
	last := f.lastSeq(f.group)
	again := f.must(f.b, `{"to":`+g+`,"cmid":"$CMID","delete":{"seq":`+u(m.Seq)+`}}`)
	if !again.Duplicate || again.Message.Seq != m.Seq || f.lastSeq(f.group) != last {
		t.Fatalf("second delete = %+v, last seq %d -> %d", again, last, f.lastSeq(f.group))
	}

	v := f.view(f.a, f.group, m.Seq)
	if !v.Deleted || string(v.Body) != "null" || v.Reactions != nil || v.EditedAt != "" {
		t.Fatalf("tombstone view = %+v", v)
	}
	if p := f.view(f.d, f.group, reply.Seq).ReplyToPreview; p == nil || p.Excerpt != nil || !p.Deleted {
		t.Fatalf("preview after delete = %+v", p)
	}
	b, _ := json.Marshal(v)
	if strings.Contains(string(b), "secret") {
		t.Fatalf("tombstone shows its body: %s", b)
	}
	// Nothing of the body is left in the store: not the message, not its edit.
	for _, sm := range f.history(f.group) {
		if strings.Contains(string(sm.Body), "secret") {
			t.Fatalf("the store still holds a deleted body in seq %d (%s): %s", sm.Seq, sm.Type, sm.Body)
		}
	}
	// The original send's retry is still its duplicate, body gone or not.
	res, err := f.svc.Send(context.Background(), f.b, Envelope{To: "group:" + f.gid, CMID: m.CMID, Body: []byte(`"secret words"`)})
	if err != nil || !res.Duplicate || res.Message.Seq != m.Seq {
		t.Fatalf("retry of the deleted message's send = %+v, %v", res, err)
	}
}

func TestReactions(t *testing.T) {
	f := newLifecycleFixture(t, Options{ReactionsPerMessage: 2})
	g := `"group:` + f.gid + `"`
	m := f.must(f.a, `{"to":`+g+`,"cmid":"$CMID","body":"vote"}`).Message
	react := func(uid, kind, emoji string) Result {
		return f.must(uid, `{"to":`+g+`,"cmid":"$CMID","`+kind+`":{"seq":`+u(m.Seq)+`,"emoji":"`+emoji+`"}}`)
	}
	r1 := react(f.b, "react", "👍")
	react(f.c, "react", "👍")
	react(f.b, "react", "👨‍👩‍👧") // a sequence joined by zero-width joiners
	if r1.Duplicate || r1.Message.Type != TypeReaction || r1.Message.Change.Kind != store.ChangeReact {
		t.Fatalf("react = %+v", r1)
	}
	last := f.lastSeq(f.group)
	if dup := react(f.b, "react", "👍"); !dup.Duplicate || f.lastSeq(f.group) != last {
		t.Fatalf("a reaction already there stored something: %+v", dup)
	}
	if dup := react(f.d, "unreact", "👍"); !dup.Duplicate || f.lastSeq(f.group) != last {
		t.Fatalf("removing a reaction not there stored something: %+v", dup)
	}
	_, err := f.do(f.d, `{"to":`+g+`,"cmid":"$CMID","react":{"seq":`+u(m.Seq)+`,"emoji":"🎉"}}`)
	expectCode(t, err, CodeConflict)
	react(f.d, "react", "👍") // an emoji already there still takes more users

	want := map[string][2]int{"👍": {3, 1}, "👨‍👩‍👧": {1, 1}} // count, mine for b
	check := func(reader string, mine map[string]bool) {
		t.Helper()
		v := f.view(reader, f.group, m.Seq)
		if len(v.Reactions) != len(want) {
			t.Fatalf("reactions for %s = %+v", reader, v.Reactions)
		}
		for _, r := range v.Reactions {
			if r.Count != want[r.Emoji][0] || r.Mine == nil || *r.Mine != mine[r.Emoji] {
				t.Fatalf("reaction %s for %s = count %d mine %v", r.Emoji, reader, r.Count, r.Mine)
			}
		}
	}
	check(f.b, map[string]bool{"👍": true, "👨‍👩‍👧": true})
	check(f.a, map[string]bool{})

	react(f.b, "unreact", "👨‍👩‍👧")
	delete(want, "👨‍👩‍👧")
	check(f.b, map[string]bool{"👍": true})
	// The slot is free again.
	react(f.a, "react", "🎉")
}

// TestChangesInOneBatch queues a message and changes of it behind a held
// commit, so the writer checks them all in one batch: each change must see
// the ones before it.
func TestChangesInOneBatch(t *testing.T) {
	f := newLifecycleFixture(t, Options{})
	g := newGate()
	f.st.setAppendHook(g.hook(nil))
	first := f.sendAsync(context.Background(), f.a, f.b, "hold")
	<-g.entered

	to := `"user:` + f.b + `"`
	payloads := []struct {
		from, payload string
		want          Code // "" = stored
		dup           bool
	}{
		{f.a, `{"to":` + to + `,"cmid":"m","body":"typo"}`, "", false},
		{f.a, `{"to":` + to + `,"cmid":"e","edit":{"seq":2},"body":"fixed"}`, "", false},
		{f.b, `{"to":"user:` + f.a + `","cmid":"r1","react":{"seq":2,"emoji":"x"}}`, "", false},
		{f.b, `{"to":"user:` + f.a + `","cmid":"r2","react":{"seq":2,"emoji":"x"}}`, "", true},
		{f.a, `{"to":` + to + `,"cmid":"d","delete":{"seq":2}}`, "", false},
		{f.a, `{"to":` + to + `,"cmid":"e2","edit":{"seq":2},"body":"again"}`, CodeConflict, false},
		{f.a, `{"to":` + to + `,"cmid":"d2","delete":{"seq":2}}`, "", true},
	}
	waits := make([]func() (Result, error), len(payloads))
	for i, p := range payloads {
		_, wait, err := f.svc.QueuePayload(context.Background(), p.from, []byte(p.payload))
		if err != nil {
			t.Fatalf("queue %s: %v", p.payload, err)
		}
		waits[i] = wait
	}
	waitFor(t, "the batch to queue", func() bool { return f.queued(f.direct) == len(payloads) })
	g.open()
	if o := recv(t, "the held send", first); o.err != nil {
		t.Fatal(o.err)
	}
	for i, p := range payloads {
		res, err := waits[i]()
		if p.want != "" {
			expectCode(t, err, p.want)
			continue
		}
		if err != nil || res.Duplicate != p.dup {
			t.Fatalf("%s = %+v, %v; want duplicate %v", p.payload, res, err, p.dup)
		}
	}
	v := f.view(f.a, f.direct, 2)
	if !v.Deleted || v.Reactions != nil {
		t.Fatalf("after the batch = %+v", v)
	}
	if n := f.lastSeq(f.direct); n != 5 {
		t.Fatalf("last seq %d, want 5 (hold, message, edit, reaction, delete)", n)
	}
}

// TestChangeDeliveryAndRetry checks what members receive for a change, that
// it pushes nobody, and that a retry of a change is its duplicate.
func TestChangeDeliveryAndRetry(t *testing.T) {
	f := newLifecycleFixture(t, Options{})
	to := `"user:` + f.b + `"`
	f.must(f.a, `{"to":`+to+`,"cmid":"m1","body":"hi"}`)
	edit := `{"to":` + to + `,"cmid":"e1","edit":{"seq":1},"body":"hi there"}`
	res := f.must(f.a, edit)
	got := f.dlv.all()
	last := got[len(got)-1]
	if last.msg.Seq != res.Message.Seq || len(last.recipients) != 2 {
		t.Fatalf("edit delivered as %+v", last)
	}
	d := View(last.msg)
	if d.Type != TypeEdit || d.Change == nil || d.Change.Kind != "edit" || d.Change.Seq != 1 || string(d.Body) != `"hi there"` {
		t.Fatalf("edit view = %+v", d)
	}
	again, err := f.do(f.a, edit)
	if err != nil || !again.Duplicate || again.Message.Seq != res.Message.Seq {
		t.Fatalf("retry = %+v, %v", again, err)
	}
	_, err = f.do(f.a, `{"to":`+to+`,"cmid":"e1","edit":{"seq":1},"body":"other"}`)
	expectCode(t, err, CodeCMIDReused)
	_, err = f.do(f.a, `{"to":`+to+`,"cmid":"e1","delete":{"seq":1}}`)
	expectCode(t, err, CodeCMIDReused)
}

func TestCheckEmoji(t *testing.T) {
	for _, tc := range []struct {
		emoji string
		ok    bool
	}{
		{"👍", true}, {"👍🏽", true}, {"❤️", true}, {"🏴󠁧󠁢󠁳󠁣󠁴󠁿", true}, {"+1", true}, {"ok", true},
		{"", false}, {" ", false}, {"a\u00a0b", false}, {"\x00", false}, {"\u200b", false},
		{"a/b", false}, {"\xff", false}, {strings.Repeat("👍", 9), false}, {strings.Repeat("👍", 8), true},
	} {
		if err := checkEmoji("react.emoji", tc.emoji); (err == nil) != tc.ok {
			t.Errorf("checkEmoji(%q) = %v, want ok %v", tc.emoji, err, tc.ok)
		}
	}
}

func TestPreviewExcerpt(t *testing.T) {
	long := strings.Repeat("é", 150)
	for _, tc := range []struct {
		body string
		want *string
	}{
		{`"short"`, ptr("short")},
		{`"` + long + `"`, ptr(long[:200])}, // é is 2 bytes: 100 runes
		{`{"image":"x"}`, nil},
	} {
		p := previewOf(store.Message{Seq: 3, From: "u", Body: []byte(tc.body)})
		if (p.Excerpt == nil) != (tc.want == nil) || p.Excerpt != nil && *p.Excerpt != *tc.want {
			t.Errorf("previewOf(%.20s) excerpt = %v, want %v", tc.body, p.Excerpt, tc.want)
		}
	}
}

func ptr(s string) *string { return &s }

func u(n uint64) string { return strconv.FormatUint(n, 10) }
