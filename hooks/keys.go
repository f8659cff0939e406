package hooks

import (
	"context"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/services/e2ekeys"
)

// KeyDirectory is the end-to-end encryption key directory as
// users/{uid}/keys uses it: the same operations as its REST endpoints.
type KeyDirectory interface {
	Publish(ctx context.Context, uid, deviceID string, up e2ekeys.Upload) (e2ekeys.Published, error)
	Delete(ctx context.Context, uid, deviceID string) error
	Devices(ctx context.Context, requester, uid string) (e2ekeys.DeviceList, error)
	Claim(ctx context.Context, requester, uid, deviceID string) (e2ekeys.Bundles, error)
}

// The operations of a keys request.
const (
	KeysPublish = "publish"
	KeysClaim   = "claim"
	KeysDevices = "devices"
	KeysDelete  = "delete"
)

// keysRequest is one JSON object on users/{uid}/keys: op, and the fields
// that op takes (publish: those of PUT /v1/devices/{device_id}/keys;
// claim: user and optionally device; devices: user; delete: none).
type keysRequest struct {
	Op        string `json:"op"`
	RequestID string `json:"request_id"`
	User      string `json:"user"`
	Device    string `json:"device"`
	e2ekeys.Upload
}

// KeysEvent answers a keys request. claim and devices carry user_id and
// devices (the JSON of GET /v1/users/{user_id}/keys and .../devices);
// publish carries device_id and one_time_prekeys; delete, device_id.
type KeysEvent struct {
	Type           string `json:"type"` // "keys"
	Op             string `json:"op"`
	RequestID      string `json:"request_id,omitempty"`
	UserID         string `json:"user_id,omitempty"`
	Devices        any    `json:"devices,omitempty"`
	DeviceID       string `json:"device_id,omitempty"`
	OneTimePrekeys *int   `json:"one_time_prekeys,omitempty"`
}

// keysRequest answers a request on users/{uid}/keys like a sync request:
// on the requester's events topic or the MQTT 5 Response Topic it names.
// publish and delete act on the publishing client's own device, so they
// need a client id {uid}/{device}.
func (h *Chat) keysRequest(cl *mqtt.Client, uid string, pk packets.Packet) error {
	if h.opts.Keys == nil {
		return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{}, notEnabled(pk.TopicName))
	}
	to, err := responseRoute(uid, pk)
	if err != nil {
		return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{RequestID: peekID(pk.Payload, "request_id")}, err)
	}
	req, err := decodeKeys(pk.Payload)
	if err != nil {
		return h.refuse(cl, uid, pk, to, ErrorEvent{RequestID: req.RequestID}, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.RequestTimeout)
	defer cancel()
	answer, err := h.keysOp(ctx, cl, uid, req)
	if err != nil {
		if req.Op == KeysClaim || req.Op == KeysDevices {
			if e2ekeys.IsNoSuchUser(err) {
				// The word MQTT clients know for a user that is not there.
				err = &chat.Error{Code: chat.CodeUnknownRecipient, Message: "no such user"}
			}
		}
		return h.refuse(cl, uid, pk, to, ErrorEvent{RequestID: req.RequestID}, err)
	}
	h.answer(uid, to, answer)
	return packets.CodeSuccessIgnore
}

func (h *Chat) keysOp(ctx context.Context, cl *mqtt.Client, uid string, req keysRequest) (KeysEvent, error) {
	ev := KeysEvent{Type: "keys", Op: req.Op, RequestID: req.RequestID}
	switch req.Op {
	case KeysClaim:
		b, err := h.opts.Keys.Claim(ctx, uid, req.User, req.Device)
		ev.UserID, ev.Devices = b.UserID, b.Devices
		return ev, err
	case KeysDevices:
		d, err := h.opts.Keys.Devices(ctx, uid, req.User)
		ev.UserID, ev.Devices = d.UserID, d.Devices
		return ev, err
	}
	device, ok := clientDevice(uid, cl.ID)
	if !ok {
		return ev, &chat.Error{Code: chat.CodeNotAuthorized, Message: req.Op + " acts on the publishing device: connect with client id " + uid + "/{device}"}
	}
	ev.DeviceID = device
	if req.Op == KeysDelete {
		return ev, h.opts.Keys.Delete(ctx, uid, device)
	}
	p, err := h.opts.Keys.Publish(ctx, uid, device, req.Upload)
	ev.OneTimePrekeys = &p.OneTimePrekeys
	return ev, err
}

// decodeKeys parses and checks a keys request: a known op with only the
// fields that op takes. On error, RequestID is the request's id when it
// was valid, for the error event.
func decodeKeys(payload []byte) (keysRequest, error) {
	var req keysRequest
	if err := decodeRequest(payload, &req); err != nil {
		return keysRequest{RequestID: peekID(payload, "request_id")}, err
	}
	if req.RequestID != "" && !validID(req.RequestID) {
		return keysRequest{}, invalidRequest("request_id", "request_id must be "+idRule)
	}
	upload := req.IdentityKey != nil || req.SignedPrekey != nil || req.OneTimePrekeys != nil
	switch req.Op {
	case KeysPublish:
		if req.User != "" || req.Device != "" {
			return req, invalidRequest("user", "publish takes the keys of the publishing device, not user or device")
		}
	case KeysClaim:
		if req.User == "" {
			return req, invalidRequest("user", "claim needs user, the id of the user whose keys to fetch")
		}
		if upload {
			return req, invalidRequest("", "claim takes only user and device")
		}
	case KeysDevices:
		if req.User == "" {
			return req, invalidRequest("user", "devices needs user, the id of the user whose devices to list")
		}
		if upload || req.Device != "" {
			return req, invalidRequest("", "devices takes only user")
		}
	case KeysDelete:
		if upload || req.User != "" || req.Device != "" {
			return req, invalidRequest("", "delete takes no fields: it removes the publishing device's keys")
		}
	default:
		return req, invalidRequest("op", `op must be "publish", "claim", "devices" or "delete"`)
	}
	return req, nil
}
