package app

import (
	"context"

	"github.com/mqchat/mqchat/hooks"
	"github.com/mqchat/mqchat/services/auth"
)

// mqttIdentifier lets the broker's hooks identify CONNECT tokens with the
// auth service without either package importing the other.
type mqttIdentifier struct{ svc *auth.Service }

func (m mqttIdentifier) Identify(ctx context.Context, token string) (hooks.Identity, error) {
	id, err := m.svc.Identify(ctx, token)
	return hooks.Identity{UserID: id.UserID, SessionID: id.SessionID, ExpiresAt: id.ExpiresAt}, err
}
