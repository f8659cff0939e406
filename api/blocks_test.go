package api

import (
	"bytes"
	"context"
	"errors"
	"testing"

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
		{`{}`, "invalid_body"},
		{`{"user_id":""}`, "invalid_body"},
		{`{"user_id":1}`, "invalid_body"},
		{`{"user_id":"a","x":1}`, "invalid_body"},
		{`{"user_id":"a"} {}`, "invalid_body"},
		{``, "invalid_body"},
	} {
		in, err := decodeBlock(bytes.NewReader([]byte(tc.body)))
		var re *requestError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.body, err)
		case tc.want == "" && in.UserID == "":
			t.Errorf("%s: accepted without a user id", tc.body)
		case tc.want != "" && (!errors.As(err, &re) || re.code != tc.want):
			t.Errorf("%s: err = %v, want %s", tc.body, err, tc.want)
		}
	}
}

// FuzzDecodeBlock: any body is either refused with a requestError or
// yields a non-empty user id.
func FuzzDecodeBlock(f *testing.F) {
	for _, s := range []string{`{"user_id":"abc"}`, `{}`, `{"user_id":null}`, `[]`, "{\"user_id\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := decodeBlock(bytes.NewReader(body))
		var re *requestError
		if err != nil && !errors.As(err, &re) {
			t.Fatalf("%q: error %v is not a requestError", body, err)
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
		var re *requestError
		if tc.ok != (err == nil) || (err != nil && !errors.As(err, &re)) || (err == nil && ch.Presence == nil && ch.RequestPush == nil) {
			t.Errorf("%s: %+v, %v", tc.body, ch, err)
		}
	}
}

// FuzzDecodePrivacy: any body is either refused with a requestError or
// yields a change of at least one setting.
func FuzzDecodePrivacy(f *testing.F) {
	for _, s := range []string{`{"presence":"nobody"}`, `{"request_push":true}`, `{}`, `{"presence":null}`, `[]`, "{\"presence\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ch, err := decodePrivacy(bytes.NewReader(body))
		var re *requestError
		if err != nil && !errors.As(err, &re) {
			t.Fatalf("%q: error %v is not a requestError", body, err)
		}
		if err == nil && ch.Presence == nil && ch.RequestPush == nil {
			t.Fatalf("%q: accepted without a change", body)
		}
	})
}
