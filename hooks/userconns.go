package hooks

import (
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// UserConnections closes a user's live MQTT connections. It is what makes
// disabling or deleting an account take effect at once: new CONNECTs are
// refused by the Auth hook (the account no longer authenticates), and this
// ends the ones already open.
type UserConnections struct{ Server *mqtt.Server }

// Close disconnects every connection of uid (client ids "{uid}/…"): MQTT 5
// clients get DISCONNECT 0x98 administrative action, 3.1.1 clients (which
// have no server DISCONNECT) a closed socket. It returns how many it closed.
func (u UserConnections) Close(uid string) int {
	if uid == "" {
		return 0
	}
	n := 0
	for id, cl := range u.Server.Clients.GetAll() {
		if !strings.HasPrefix(id, uid+"/") || cl.Net.Inline || cl.Closed() {
			continue
		}
		if cl.Properties.ProtocolVersion == 5 {
			_ = u.Server.DisconnectClient(cl, packets.ErrAdministrativeAction)
		} else {
			cl.Stop(packets.ErrAdministrativeAction)
		}
		n++
	}
	return n
}
