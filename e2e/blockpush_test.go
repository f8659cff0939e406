package e2e

import (
	"fmt"
	"net/http"
	"testing"
)

// TestBlockedSenderIsNotPushed: an offline blocker gets no push for the
// blocked user's messages, while other chats still push.
func TestBlockedSenderIsNotPushed(t *testing.T) {
	s, fcm := startPushServer(t, nil)
	alice, mallory, carol := s.register(t, "alice"), s.register(t, "mallory"), s.register(t, "carol")
	befriend(t, s, mallory, alice)
	befriend(t, s, carol, alice)
	s.putDevice(t, alice, "tablet", "android", "tok-alice")
	blockUser(t, s, alice, mallory)
	mChat, cChat := directChat(alice.ID, mallory.ID), directChat(alice.ID, carol.ID)
	for i := range 3 {
		if st := s.call(t, "POST", "/v1/chats/"+mChat+"/messages", mallory.Token, map[string]any{"body": "psst"},
			map[string]string{"Idempotency-Key": fmt.Sprint("m", i)}, nil); st != http.StatusCreated {
			t.Fatalf("mallory's send: %d", st)
		}
	}
	// carol's message is sent after mallory's were stored: had alice been
	// a recipient of theirs, their pushes would be queued before the one
	// for carol's, the marker.
	if st := s.call(t, "POST", "/v1/chats/"+cChat+"/messages", carol.Token, map[string]any{"body": "hi"},
		map[string]string{"Idempotency-Key": "marker"}, nil); st != http.StatusCreated {
		t.Fatalf("carol's send: %d", st)
	}
	waitPushFor(t, fcm, "tok-alice", cChat)
	for _, r := range fcm.To("tok-alice") {
		if r.Message.Data["chat"] == mChat {
			t.Fatalf("alice was pushed for mallory, whom she blocks: %+v", r.Message.Data)
		}
	}
}
