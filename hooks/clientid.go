package hooks

import (
	"strings"

	"github.com/mqchat/mqchat/internal/ids"
)

// clientDevice parses a user's MQTT client id, {uid}/{device}: the device
// part is a device id (ids.ValidDeviceID). ok is false for
// any other client id, so a client id one user may use is never one
// another user (or an anonymous client, whose ids hold no '/') may use:
// sharing one would take over that session and its queued messages.
func clientDevice(uid, clientID string) (device string, ok bool) {
	device, ok = strings.CutPrefix(clientID, uid+"/")
	if !ok || !ids.ValidDeviceID(device) {
		return "", false
	}
	return device, true
}
