package api

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/services/e2ekeys"
)

// FuzzKeysRequest: PUT /v1/devices/{device_id}/keys bodies decode as
// encoding/json would (base64 bytes included) behind a valid device id,
// and ?device= of a claim is one valid device id or nothing.
func FuzzKeysRequest(f *testing.F) {
	for _, s := range [][3]string{
		{"phone", `{"identity_key":"AAAA","signed_prekey":{"id":1,"key":"AAAA","signature":"AAAA"},"one_time_prekeys":[{"id":1,"key":"AAAA"}]}`, ""},
		{"phone", `{"identity_key":"!!","signed_prekey":{}}`, "device=phone"},
		{"phone", `{"identity_key":"AAAA","signed_prekey":{"id":-1}}`, "device=a%2Fb"},
		{"phone", `{"identity_key":"AAAA","colour":1}`, "device=x&device=y"},
		{"a/b", `{}`, "other=1"},
		{"", `{}`, "device="},
		{strings.Repeat("d", ids.MaxDeviceID+1), `{}`, "device=" + strings.Repeat("d", ids.MaxDeviceID+1)},
	} {
		f.Add(s[0], []byte(s[1]), s[2])
	}
	f.Fuzz(func(t *testing.T, id string, body []byte, query string) {
		up, err := decodeKeys(id, http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader(body)), bodyLimit))
		switch {
		case !ids.ValidDeviceID(id):
			wantRequestError(t, "decodeKeys", err, http.StatusBadRequest, "invalid_payload")
		case chat.CodeOf(err) == chat.CodeTooLarge:
			// As in checkBody: only past the limit, whatever came before.
			if len(body) <= bodyLimit {
				t.Fatalf("%q: 413 for %d bytes", body, len(body))
			}
		case err != nil:
			wantRequestError(t, "decodeKeys", err, http.StatusBadRequest, "invalid_payload")
			var ref e2ekeys.Upload
			if len(body) <= bodyLimit && strictJSON(body, &ref) == nil {
				t.Fatalf("%q refused (%v), encoding/json accepts it", body, err)
			}
		default:
			var ref e2ekeys.Upload
			if err := strictJSON(body, &ref); err != nil {
				t.Fatalf("%q accepted, encoding/json: %v", body, err)
			}
			if !bytes.Equal(up.IdentityKey, ref.IdentityKey) || len(up.OneTimePrekeys) != len(ref.OneTimePrekeys) {
				t.Fatalf("%q decoded as %+v", body, up)
			}
		}
		q, qerr := url.ParseQuery(query)
		if qerr != nil {
			return
		}
		device, err := parseKeysQuery(q)
		if err != nil {
			wantRequestError(t, "parseKeysQuery", err, http.StatusBadRequest, "invalid_payload")
			if len(q) == 1 && len(q["device"]) == 1 && ids.ValidDeviceID(q["device"][0]) {
				t.Fatalf("%q refused", query)
			}
			return
		}
		if device != "" && (!ids.ValidDeviceID(device) || len(q["device"]) != 1 || q["device"][0] != device) || device == "" && len(q) != 0 {
			t.Fatalf("%q: device %q", query, device)
		}
	})
}
