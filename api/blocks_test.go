package api

import (
	"bytes"
	"context"
	"testing"

	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/services/consent"
	"github.com/mqchat/mqchat/services/groups"
	"github.com/mqchat/mqchat/store"
)

type stubPrivacy struct{}

func (stubPrivacy) Privacy(context.Context, string) (consent.PrivacyView, error) {
	return consent.PrivacyView{}, nil
}

func (stubPrivacy) SetPrivacy(context.Context, string, consent.PrivacyChange) (consent.PrivacyView, error) {
	return consent.PrivacyView{}, nil
}

type stubBlocks struct{}

func (stubBlocks) Block(context.Context, string, string) (store.Block, error) {
	return store.Block{}, nil
}
func (stubBlocks) Unblock(context.Context, string, string) error                { return nil }
func (stubBlocks) List(context.Context, string) ([]store.Block, error)          { return nil, nil }
func (stubBlocks) Accept(context.Context, string, string) error                 { return nil }
func (stubBlocks) Invites(context.Context, string) ([]store.GroupInvite, error) { return nil, nil }
func (stubBlocks) AcceptInvite(context.Context, string, string) (groups.View, error) {
	return groups.View{}, nil
}
func (stubBlocks) DeclineInvite(context.Context, string, string) error { return nil }

func TestDecodeBlock(t *testing.T) {
	for _, tc := range []struct {
		body string
		want string // "" = accepted
	}{
		{`{"user_id":"abc"}`, ""},
		{`{}`, "invalid_payload"},
		{`{"user_id":""}`, "invalid_payload"},
		{`{"user_id":1}`, "invalid_payload"},
		{`{"user_id":"a","x":1}`, "invalid_payload"},
		{`{"user_id":"a"} {}`, "invalid_payload"},
		{``, "invalid_payload"},
	} {
		in, err := decodeBlock(bytes.NewReader([]byte(tc.body)))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.body, err)
		case tc.want == "" && in.UserID == "":
			t.Errorf("%s: accepted without a user id", tc.body)
		case tc.want != "" && string(chat.CodeOf(err)) != tc.want:
			t.Errorf("%s: err = %v, want %s", tc.body, err, tc.want)
		}
	}
}

// FuzzDecodeBlock: any body is either refused as invalid_payload or
// yields a non-empty user id.
func FuzzDecodeBlock(f *testing.F) {
	for _, s := range []string{`{"user_id":"abc"}`, `{}`, `{"user_id":null}`, `[]`, "{\"user_id\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := decodeBlock(bytes.NewReader(body))
		if err != nil && chat.CodeOf(err) != chat.CodeInvalid {
			t.Fatalf("%q: error %v is not an invalid_payload refusal", body, err)
		}
		if err == nil && in.UserID == "" {
			t.Fatalf("%q: accepted without a user id", body)
		}
	})
}

func TestDecodePrivacy(t *testing.T) {
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`{"presence":"nobody"}`, true},
		{`{"presence":"whatever"}`, true}, // the service checks values
		{`{"request_push":true}`, true},
		{`{"request_push":"yes"}`, false},
		{`{}`, false},
		{`{"presence":null}`, false},
		{`{"presence":1}`, false},
		{`{"presence":"nobody","x":1}`, false},
		{`[]`, false},
	} {
		ch, err := decodePrivacy(bytes.NewReader([]byte(tc.body)))
		if tc.ok != (err == nil) || (err != nil && chat.CodeOf(err) != chat.CodeInvalid) || (err == nil && ch.Presence == nil && ch.RequestPush == nil) {
			t.Errorf("%s: %+v, %v", tc.body, ch, err)
		}
	}
}

// FuzzDecodePrivacy: any body is either refused as invalid_payload or
// yields a change of at least one setting.
func FuzzDecodePrivacy(f *testing.F) {
	for _, s := range []string{`{"presence":"nobody"}`, `{"request_push":true}`, `{}`, `{"presence":null}`, `[]`, "{\"presence\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ch, err := decodePrivacy(bytes.NewReader(body))
		if err != nil && chat.CodeOf(err) != chat.CodeInvalid {
			t.Fatalf("%q: error %v is not an invalid_payload refusal", body, err)
		}
		if err == nil && ch.Presence == nil && ch.RequestPush == nil {
			t.Fatalf("%q: accepted without a change", body)
		}
	})
}
