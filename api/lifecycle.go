package api

import (
	"context"
	"errors"
	"github.com/mqchat/mqchat/services/chat"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/services/auth"
)

// Lifecycle is what the API needs from the account lifecycle service.
type Lifecycle interface {
	// DeleteOwn deletes uid's account once password confirms it.
	DeleteOwn(ctx context.Context, uid, password string) error
}

func (a *api) routeLifecycle(r *gin.RouterGroup) {
	if a.opts.Lifecycle == nil {
		return
	}
	r.DELETE("/me", a.deleteMe)
}

type deleteMeBody struct {
	Password string `json:"password"`
}

// deleteMe answers DELETE /v1/me: the account, its devices, sessions and
// group memberships go; its messages stay under its id.
func (a *api) deleteMe(c *gin.Context) {
	var in deleteMeBody
	if !bindJSON(c, &in) {
		return
	}
	if in.Password == "" {
		fail(c, invalid("password", "password is required to delete the account"))
		return
	}
	err := a.opts.Lifecycle.DeleteOwn(c.Request.Context(), c.GetString(userKey), in.Password)
	switch {
	case err == nil:
		c.Status(http.StatusNoContent)
	case errors.Is(err, auth.ErrInvalidCredentials):
		// 403, not 401: the token is fine, the confirmation is not.
		fail(c, &chat.Error{Code: chat.CodeNotAuthorized, Field: "password", Message: "wrong password"})
	default:
		fail(c, err)
	}
}
