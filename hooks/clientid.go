package hooks

import "strings"

// clientDevice parses a user's MQTT client id, {uid}/{device}: the device
// part is 1 to maxDeviceID bytes without MQTT wildcards. ok is false for
// any other client id, so a client id one user may use is never one
// another user (or an anonymous client, whose ids hold no '/') may use:
// sharing one would take over that session and its queued messages.
func clientDevice(uid, clientID string) (device string, ok bool) {
	device, ok = strings.CutPrefix(clientID, uid+"/")
	if !ok || device == "" || len(device) > maxDeviceID || hasWildcard(device) {
		return "", false
	}
	return device, true
}
