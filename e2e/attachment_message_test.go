package e2e

import (
	"bytes"
	"encoding/json"
	"image"
	_ "image/jpeg" // thumbnails decode as JPEG
	"net/http"
	"testing"
)

// messageAttachment is the body of an image or file message as members
// receive it: the sender's fields and the server's description.
type messageAttachment struct {
	Attachment  string `json:"attachment"`
	Caption     string `json:"caption"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
	SHA256      string `json:"sha256"`
	Width       int    `json:"width"`
	Height      int    `json:"height"`
	Thumbnail   *struct {
		ID     string `json:"id"`
		Width  int    `json:"width"`
		Height int    `json:"height"`
		Data   []byte `json:"data"`
	} `json:"thumbnail"`
}

// checkAttachmentBody fails unless raw describes meta with an inline
// thumbnail that decodes as a JPEG of the stated dimensions.
func checkAttachmentBody(t *testing.T, where string, raw json.RawMessage, meta attachmentMeta) {
	t.Helper()
	var b messageAttachment
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatalf("%s: body %s: %v", where, raw, err)
	}
	if b.Attachment != meta.ID || b.Caption != "look" || b.Size != meta.Size || b.SHA256 != meta.SHA256 ||
		b.ContentType != "image/png" || b.Width != meta.Width || b.Height != meta.Height {
		t.Fatalf("%s: body %+v, upload %+v", where, b, meta)
	}
	th := b.Thumbnail
	if th == nil || th.ID != meta.Thumbnail.ID || th.Width != meta.Thumbnail.Width || th.Height != meta.Thumbnail.Height || len(th.Data) == 0 {
		t.Fatalf("%s: thumbnail %+v, upload's %+v", where, th, meta.Thumbnail)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(th.Data))
	if err != nil || format != "jpeg" || cfg.Width != th.Width || cfg.Height != th.Height {
		t.Fatalf("%s: inline thumbnail decodes as %s %dx%d (%v), want a %dx%d JPEG", where, format, cfg.Width, cfg.Height, err, th.Width, th.Height)
	}
}

// TestAttachmentMessageInGroup: a group member receives an image message
// over MQTT with its size, type, hash, dimensions and an inline
// thumbnail; the chat list's last_message and history carry the same; an
// offline member's push says "Photo", never the body.
func TestAttachmentMessageInGroup(t *testing.T) {
	s, fcm := startPushServer(t, nil)
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	s.putDevice(t, carol, "phone", "android", "tok-carol")
	aPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), alice, "phone")
	bPhone := dialV5(t, tcpConn(t, s.addrs.MQTT), bob, "phone")
	bPhone.subscribe(t, "users/"+bob.ID+"/inbox")

	var g groupView
	if st := s.call(t, "POST", "/v1/groups", alice.Token, map[string]any{"name": "trip", "members": []string{bob.ID, carol.ID}}, nil, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	// Carol has read the group's creation, so the image is her one unread
	// message and her push names it rather than counting.
	for _, c := range s.allChats(t, carol, nil).Chats {
		if c.Chat == g.Chat {
			if st := s.call(t, "POST", "/v1/chats/"+g.Chat+"/read", carol.Token, map[string]uint64{"seq": c.LastSeq}, nil, nil); st != http.StatusOK && st != http.StatusNoContent {
				t.Fatalf("carol reads the group: %d", st)
			}
		}
	}
	meta := uploadRaw(t, s, alice, testPNG(t, 480, 240, "gps=48.8584,2.2945"), "image/png").attachment(t)
	env, _ := json.Marshal(map[string]any{"to": "group:" + g.GroupID, "cmid": "img1", "type": "image",
		"body": map[string]string{"attachment": meta.ID, "caption": "look"}})
	if rc, err := aPhone.publish(t, "users/"+alice.ID+"/send", env); err != nil || rc != 0 {
		t.Fatalf("send the image: reason 0x%02x, %v", rc, err)
	}
	got := bPhone.box.next(t, "bob's image message", func(r received) bool {
		return r.Topic == "users/"+bob.ID+"/inbox" && r.inbox(t).CMID == "img1"
	}).inbox(t)
	if got.Type != "image" || got.Chat != g.Chat {
		t.Fatalf("bob got %+v", got)
	}
	checkAttachmentBody(t, "inbox", got.Body, meta)

	var list *chatSummary
	for _, c := range s.allChats(t, bob, nil).Chats {
		if c.Chat == g.Chat {
			list = &c
		}
	}
	if list == nil || list.LastMessage == nil || list.LastMessage.Type != "image" {
		t.Fatalf("bob's chat list entry %+v", list)
	}
	checkAttachmentBody(t, "chat list last_message", list.LastMessage.Body, meta)
	page := s.history(t, bob, g.Chat, "")
	last := page.Messages[len(page.Messages)-1]
	checkAttachmentBody(t, "history", last.Body, meta)

	push := pushesTo(t, fcm, "tok-carol", 1, 0)[0].Message
	if push.Notification.Body != "Photo" {
		t.Fatalf("carol's push says %q, want Photo", push.Notification.Body)
	}
	for k, v := range push.Data {
		if bytes.Contains([]byte(v), []byte(meta.ID)) {
			t.Fatalf("push data %s carries the body: %q", k, v)
		}
	}
}
