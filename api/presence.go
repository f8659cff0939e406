package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/services/presence"
)

// Presence is what the API needs from the presence service.
type Presence interface {
	View(uid string) presence.View
}

// Relations decides who may see whose presence: the same rule as a
// subscription to presence/{uid}.
type Relations interface {
	SharesChat(ctx context.Context, a, b string) (bool, error)
}

// maxPresenceIDs bounds GET /v1/presence?ids=.
const maxPresenceIDs = 100

// PresenceEntry is one user's presence in a REST answer.
type PresenceEntry struct {
	UserID string `json:"user_id"`
	presence.View
}

func (a *api) routePresence(r gin.IRoutes) {
	if a.opts.Presence == nil || a.opts.Relations == nil {
		return
	}
	r.GET("/presence/:user_id", a.presenceOne)
	r.GET("/presence", a.presenceMany)
}

// presenceOne answers GET /v1/presence/{user_id}; 403 when the caller may
// not see that user (shares no 1:1 chat and no group with it).
func (a *api) presenceOne(c *gin.Context) {
	uid, other := c.GetString(userKey), c.Param("user_id")
	var (
		ok  bool
		err error
	)
	if ids.ValidUserID(other) { // any other string is a user nobody may see
		ok, err = a.opts.Relations.SharesChat(c.Request.Context(), uid, other)
	}
	if err != nil {
		fail(c, err)
		return
	}
	if !ok {
		fail(c, &chat.Error{Code: chat.CodeNotAuthorized, Message: "no shared chat with this user"})
		return
	}
	c.JSON(http.StatusOK, PresenceEntry{UserID: other, View: a.opts.Presence.View(other)})
}

// presenceMany answers GET /v1/presence?ids=a,b,c (up to 100 ids): the
// users the caller may see, in the order asked; the others are left out.
func (a *api) presenceMany(c *gin.Context) {
	uid := c.GetString(userKey)
	asked, err := parsePresenceIDs(c.Request.URL.Query())
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]PresenceEntry, 0, len(asked))
	for _, id := range asked {
		ok, err := a.opts.Relations.SharesChat(c.Request.Context(), uid, id)
		if err != nil {
			fail(c, err)
			return
		}
		if ok {
			out = append(out, PresenceEntry{UserID: id, View: a.opts.Presence.View(id)})
		}
	}
	c.JSON(http.StatusOK, gin.H{"presence": out})
}
