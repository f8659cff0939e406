package hooks

import (
	"slices"
	"testing"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
)

// FuzzDecodeKeys: a keys request is one known op with only the fields that
// op takes; anything else is refused with invalid_payload (or too large),
// never a panic.
func FuzzDecodeKeys(f *testing.F) {
	uid := ids.NewUserID()
	for _, s := range append(slices.Clone(requestSeeds),
		`{"op":"publish","identity_key":"AAAA","signed_prekey":{"id":1,"key":"AAAA","signature":"AAAA"},"one_time_prekeys":[{"id":1,"key":"AAAA"}]}`,
		`{"op":"publish","request_id":"r1","identity_key":"AAAA","signed_prekey":{"id":1,"key":"AAAA","signature":"AAAA"}}`,
		`{"op":"publish","user":"`+uid+`"}`,
		`{"op":"publish","identity_key":"!!"}`,
		`{"op":"publish","signed_prekey":{"id":-1}}`,
		`{"op":"claim","user":"`+uid+`"}`,
		`{"op":"claim","user":"`+uid+`","device":"phone"}`,
		`{"op":"claim","device":"phone"}`,
		`{"op":"claim","user":"`+uid+`","identity_key":"AAAA"}`,
		`{"op":"devices","user":"`+uid+`"}`,
		`{"op":"devices","user":"`+uid+`","device":"phone"}`,
		`{"op":"delete"}`,
		`{"op":"delete","user":"`+uid+`"}`,
		`{"op":"steal"}`, `{"op":""}`, `{"op":1}`,
		`{"op":"claim","user":"`+uid+`","request_id":"a b"}`,
		`{"op":"claim","user":"`+uid+`","colour":"red","request_id":"r2"}`,
	) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		req, err := decodeKeys(payload)
		if err != nil {
			wantRequestRefusal(t, "decodeKeys", err, chat.CodeInvalid, chat.CodeTooLarge)
			wantPeekedID(t, payload, "request_id", req.RequestID)
			return
		}
		var ref keysRequest
		if err := strictJSON(payload, &ref); err != nil {
			t.Fatalf("%q accepted, encoding/json: %v", payload, err)
		}
		if req.RequestID != "" && !validID(req.RequestID) {
			t.Fatalf("%q: request id %q", payload, req.RequestID)
		}
		upload := req.IdentityKey != nil || req.SignedPrekey != nil || req.OneTimePrekeys != nil
		switch req.Op {
		case KeysPublish:
			if req.User != "" || req.Device != "" {
				t.Fatalf("%q: publish with user or device", payload)
			}
		case KeysClaim:
			if req.User == "" || upload {
				t.Fatalf("%q: claim decoded as %+v", payload, req)
			}
		case KeysDevices:
			if req.User == "" || req.Device != "" || upload {
				t.Fatalf("%q: devices decoded as %+v", payload, req)
			}
		case KeysDelete:
			if req.User != "" || req.Device != "" || upload {
				t.Fatalf("%q: delete decoded as %+v", payload, req)
			}
		default:
			t.Fatalf("%q: op %q accepted", payload, req.Op)
		}
	})
}
