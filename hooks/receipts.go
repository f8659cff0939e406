package hooks

import (
	"context"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/store"
)

// ReadMarker moves read cursors: POST /v1/chats/{chat}/read.
type ReadMarker interface {
	MarkRead(ctx context.Context, uid, chat string, seq uint64) (store.ChatState, error)
}

// receiptRequest marks chat read up to read_seq. Seq is accepted as an
// alias, the name POST /v1/chats/{chat}/read used to take.
type receiptRequest struct {
	Chat    string `json:"chat"`
	ReadSeq uint64 `json:"read_seq"`
	Seq     uint64 `json:"seq"`
}

// receipt moves uid's read cursor, never backwards and never past the
// chat's last message. Success has no answer of its own: the cursor's move
// is announced as a receipt event, as for the REST call.
func (h *Chat) receipt(cl *mqtt.Client, uid string, pk packets.Packet) error {
	if h.opts.Receipts == nil {
		return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{}, notEnabled(pk.TopicName))
	}
	req, err := decodeReceipt(pk.Payload)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), h.opts.RequestTimeout)
		defer cancel()
		_, err = h.opts.Receipts.MarkRead(ctx, uid, req.Chat, req.ReadSeq)
	}
	if err != nil {
		return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{}, err)
	}
	return packets.CodeSuccessIgnore
}

// decodeReceipt parses and checks a read receipt request.
func decodeReceipt(payload []byte) (receiptRequest, error) {
	var req receiptRequest
	if err := decodeRequest(payload, &req); err != nil {
		return receiptRequest{}, err
	}
	switch {
	case req.Chat == "":
		return req, invalidRequest("chat", "chat is required")
	case req.ReadSeq != 0 && req.Seq != 0 && req.ReadSeq != req.Seq:
		return req, invalidRequest("seq", "seq is another name of read_seq: send only read_seq")
	case req.ReadSeq == 0:
		req.ReadSeq = req.Seq
	}
	if req.ReadSeq == 0 {
		return req, invalidRequest("read_seq", "read_seq must be at least 1")
	}
	return req, nil
}
