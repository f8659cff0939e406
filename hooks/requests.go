package hooks

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/internal/jsonerr"
	"github.com/mqchat/mqchat/services/chat"
)

// Requests are the JSON objects clients publish on users/{uid}/groups,
// sync, receipts and typing. Each is handled on the publishing client's
// goroutine (they are small and rare next to sends), consumed, and answered
// on users/{uid}/events (sync: or on an MQTT 5 Response Topic).

// maxRequestBytes bounds a request payload; the largest real one, a group
// operation naming 500 members, is about 12 KiB.
const maxRequestBytes = 64 << 10

// replyTo is where a request's answer goes: the requester's events topic,
// or (sync) the MQTT 5 Response Topic it named, with its Correlation Data.
type replyTo struct {
	topic       string // "" = users/{uid}/events
	correlation []byte
}

// responseRoute is where a request's answer goes: the MQTT 5 Response
// Topic it names (with its Correlation Data), which must be
// users/{uid}/events or inside users/{uid}/responses/, or else the events
// topic. A response topic never lets a client publish into anyone else's
// subtree, nor into its own inbox, which carries only chat messages.
func responseRoute(uid string, pk packets.Packet) (replyTo, error) {
	rt := pk.Properties.ResponseTopic
	if rt == "" {
		return replyTo{}, nil
	}
	if !validResponseTopic(uid, rt) {
		return replyTo{}, &chat.Error{
			Code: chat.CodeNotAuthorized, Message: "the response topic must be users/" + uid + "/events or under users/" + uid + "/responses/",
		}
	}
	return replyTo{topic: rt, correlation: pk.Properties.CorrelationData}, nil
}

// answer publishes v at QoS 1 where to says.
func (h *Chat) answer(uid string, to replyTo, v any) {
	if to.topic == "" {
		h.opts.Events.Event(uid, v)
		return
	}
	h.resp.publish(to.topic, 1, to.correlation, v)
}

// invalidRequest refuses a request because of field ("" when no one field
// is at fault).
func invalidRequest(field, msg string) error { return chat.Invalid(field, msg) }

func notEnabled(topic string) error {
	return &chat.Error{Code: chat.CodeNotAuthorized, Message: "publishing to " + topic + " is not enabled on this server"}
}

// decodeRequest parses a request strictly: one JSON object, no unknown
// field (a typo fails loudly), nothing after it.
func decodeRequest(payload []byte, v any) error {
	if len(payload) > maxRequestBytes {
		return &chat.Error{Code: chat.CodeTooLarge, Message: fmt.Sprintf("request is %d bytes, the limit is %d", len(payload), maxRequestBytes)}
	}
	trimmed := trimJSONSpace(payload)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return invalidRequest("", "request must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidRequest(jsonerr.Explain(err))
	}
	if len(trimJSONSpace(payload[dec.InputOffset():])) != 0 {
		return invalidRequest("", "request has data after the JSON object")
	}
	return nil
}

// peekID reads the string field key from a request that failed strict
// decoding, so that its error event can still name the request. It returns
// "" unless the value is a valid id.
func peekID(payload []byte, key string) string {
	if len(payload) > maxRequestBytes {
		return ""
	}
	var fields map[string]json.RawMessage
	if json.NewDecoder(bytes.NewReader(payload)).Decode(&fields) != nil {
		return "" // not even one JSON object; data after one is fine here
	}
	var id string
	if json.Unmarshal(fields[key], &id) != nil || !validID(id) {
		return ""
	}
	return id
}

// validID is the rule for op_id and request_id, the same as for cmid: 1 to
// 64 printable ASCII characters without spaces.
func validID(s string) bool { return chat.ValidCMID(s) }

const idRule = "1 to 64 printable ASCII characters without spaces"

// trimJSONSpace trims what JSON counts as whitespace (RFC 8259: space, tab,
// line feed, carriage return) and nothing else: bytes.TrimSpace would also
// drop a vertical tab or a form feed, which encoding/json refuses.
func trimJSONSpace(b []byte) []byte {
	return bytes.Trim(b, " \t\n\r")
}
