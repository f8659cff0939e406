package fcm_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/fcmtest"
	"github.com/mqchat/mqchat/services/push"
	"github.com/mqchat/mqchat/services/push/fcm"
	"github.com/mqchat/mqchat/store"
)

func start(t *testing.T) (*fcmtest.Server, *fcm.Provider) {
	t.Helper()
	srv, err := fcmtest.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	p, err := fcm.New(context.Background(), fcm.Options{CredentialsFile: srv.CredentialsFile, Endpoint: srv.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	return srv, p
}

var note = push.Notification{UserID: "bob", Chat: "d:alice:bob", Seq: 7, From: "alice", Unread: 3, Title: "alice", Body: "3 new messages"}

func targets(tokens ...string) []push.Target {
	out := make([]push.Target, len(tokens))
	for i, tok := range tokens {
		out[i] = push.Target{DeviceID: "dev" + tok, Platform: store.PlatformAndroid, Token: tok}
	}
	return out
}

// TestSendRendersMessage checks what reaches FCM: one request per token
// through the OAuth token from the credentials' token_uri, collapsed per
// chat on every platform, with the data payload apps sync from.
func TestSendRendersMessage(t *testing.T) {
	srv, p := start(t)
	errs := p.Send(context.Background(), note, targets("tok-a", "tok-b"))
	for i, err := range errs {
		if err != nil {
			t.Fatalf("target %d: %v", i, err)
		}
	}
	reqs := srv.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	if srv.TokensIssued() == 0 {
		t.Fatal("no OAuth token was requested from token_uri")
	}
	got := map[string]bool{}
	for _, r := range reqs {
		m := r.Message
		got[m.Token] = true
		want := map[string]string{"chat": "d:alice:bob", "seq": "7", "from": "alice", "unread": "3"}
		for k, v := range want {
			if m.Data[k] != v {
				t.Errorf("data[%s] = %q, want %q", k, m.Data[k], v)
			}
		}
		if m.Notification == nil || m.Notification.Title != "alice" || m.Notification.Body != "3 new messages" {
			t.Errorf("notification = %+v", m.Notification)
		}
		if m.Android == nil || m.Android.CollapseKey != note.Chat || m.Android.Notification.Tag != note.Chat {
			t.Errorf("android = %+v", m.Android)
		}
		if m.APNS == nil || m.APNS.Headers["apns-collapse-id"] != note.Chat {
			t.Errorf("apns = %+v", m.APNS)
		}
		if m.Webpush == nil || m.Webpush.Notification.Tag != note.Chat {
			t.Errorf("webpush = %+v", m.Webpush)
		}
	}
	if !got["tok-a"] || !got["tok-b"] {
		t.Fatalf("tokens sent: %v", got)
	}
}

// TestSendClassifiesErrors feeds FCM's real error bodies through the SDK.
func TestSendClassifiesErrors(t *testing.T) {
	cases := []struct {
		answer fcmtest.Answer
		kind   push.Kind
		reason string
	}{
		{fcmtest.Unregistered, push.DeadToken, "unregistered"},
		{fcmtest.InvalidArgument, push.DeadToken, "invalid_argument"},
		{fcmtest.QuotaExceeded, push.Transient, "quota_exceeded"},
		{fcmtest.Internal, push.Transient, "internal"},
	}
	srv, p := start(t)
	for _, c := range cases {
		t.Run(string(c.answer), func(t *testing.T) {
			tok := "tok-" + string(c.answer)
			srv.Script(tok, c.answer)
			errs := p.Send(context.Background(), note, targets(tok, "tok-fine"))
			var se *push.SendError
			if !errors.As(errs[0], &se) || se.Kind != c.kind || se.Reason != c.reason {
				t.Fatalf("error = %#v, want kind %d reason %s", errs[0], c.kind, c.reason)
			}
			if errs[1] != nil {
				t.Fatalf("the other token failed: %v", errs[1])
			}
		})
	}
}

// TestSendRetriesUnavailable: the SDK itself retries 503 with backoff
// before the error reaches the push service.
func TestSendRetriesUnavailable(t *testing.T) {
	srv, p := start(t)
	srv.Script("tok", fcmtest.Unavailable, fcmtest.Unavailable)
	if errs := p.Send(context.Background(), note, targets("tok")); errs[0] != nil {
		t.Fatalf("send: %v", errs[0])
	}
	reqs := srv.To("tok")
	if len(reqs) != 3 {
		t.Fatalf("%d attempts, want 3", len(reqs))
	}
	if gap := reqs[2].At.Sub(reqs[1].At); gap < 500*time.Millisecond {
		t.Fatalf("second retry after %s: no backoff", gap)
	}
}
