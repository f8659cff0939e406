package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/services/auth"
)

// Sessions is what the API needs to end sessions and change passwords.
type Sessions interface {
	Logout(ctx context.Context, uid, sid string) error
	RevokeAll(ctx context.Context, uid string) error
	Sessions(ctx context.Context, uid, current string) ([]auth.SessionInfo, error)
	ChangePassword(ctx context.Context, uid, sid, oldPassword, newPassword string) (auth.Tokens, error)
}

// sessionKey holds the session id of the request's access token.
const sessionKey = "mqchat.sid"

// passwordBody is POST /v1/me/password.
type passwordBody struct {
	OldPassword string `json:"old_password"`
	NewPassword string `json:"new_password"`
}

func (a *api) routeSessions(r gin.IRoutes) {
	if a.opts.Sessions == nil {
		return
	}
	r.POST("/auth/logout", a.logout)
	r.POST("/auth/logout-all", a.logoutAll)
	r.GET("/sessions", a.listSessions)
	r.DELETE("/sessions/:session_id", a.deleteSession)
	// Limited like login: a stolen access token must not buy unlimited
	// guesses at the password.
	r.POST("/me/password", a.limitAuth, a.changePassword)
}

// labelSession names the session a login or register opens after the
// client's User-Agent, so the session list can tell devices apart.
func (a *api) labelSession(c *gin.Context) {
	if ua := c.GetHeader("User-Agent"); ua != "" {
		c.Request = c.Request.WithContext(auth.WithLabel(c.Request.Context(), ua))
	}
	c.Next()
}

func (a *api) logout(c *gin.Context) {
	if err := a.opts.Sessions.Logout(c.Request.Context(), c.GetString(userKey), c.GetString(sessionKey)); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (a *api) logoutAll(c *gin.Context) {
	if err := a.opts.Sessions.RevokeAll(c.Request.Context(), c.GetString(userKey)); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (a *api) listSessions(c *gin.Context) {
	list, err := a.opts.Sessions.Sessions(c.Request.Context(), c.GetString(userKey), c.GetString(sessionKey))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"sessions": list})
}

func (a *api) deleteSession(c *gin.Context) {
	if err := a.opts.Sessions.Logout(c.Request.Context(), c.GetString(userKey), c.Param("session_id")); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (a *api) changePassword(c *gin.Context) {
	var in passwordBody
	if !bindJSON(c, &in) {
		return
	}
	tok, err := a.opts.Sessions.ChangePassword(c.Request.Context(), c.GetString(userKey), c.GetString(sessionKey), in.OldPassword, in.NewPassword)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, tok)
}
