
// TestBlockedSenderIsNotPushed: an offline blocker gets no push for the
// blocked user's messages, while other chats still push.
func TestBlockedSenderIsNotPushed(t *testing.T) {
	s, fcm := startPushServer(t, nil)
	alice, mallory, carol := s.register(t, "alice"), s.register(t, "mallory"), s.register(t, "carol")
	befriend(t, s, mallory, alice)
	befriend(t, s, carol, alice)
	s.putDevice(t, alice, "tablet", "android", "tok-alice")
	blockUser(t, s, alice, mallory)
	mChat := directChat(alice.ID, mallory.ID)
	for i := range 3 {
		if st := s.call(t, "POST", "/v1/chats/"+mChat+"/messages", mallory.Token, map[string]any{"body": "psst"},
			map[string]string{"Idempotency-Key": fmt.Sprint("m", i)}, nil); st != http.StatusCreated {
			t.Fatalf("mallory's send: %d", st)
		}
	}
	// carol's message is fanned out after mallory's (REST answers after the
	// store; fan-out of a chat is in order, and mallory's chat never had
	// alice as a recipient): its push is the marker.
	if st := s.call(t, "POST", "/v1/chats/"+directChat(alice.ID, carol.ID)+"/messages", carol.Token, map[string]any{"body": "hi"},
		map[string]string{"Idempotency-Key": "marker"}, nil); st != http.StatusCreated {
		t.Fatalf("carol's send: %d", st)
	}
	waitPushFor(t, fcm, "tok-alice", directChat(alice.ID, carol.ID))
	for _, r := range fcm.To("tok-alice") {
		if r.Message.Data["chat"] == mChat {
			t.Fatalf("alice was pushed for mallory, whom she blocks: %+v", r.Message.Data)
		}
	}
}
