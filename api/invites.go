package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/services/groups"
	"github.com/mqchat/mqchat/store"
)

// Invites is what the API needs for group invitations.
type Invites interface {
	Invites(ctx context.Context, uid string) ([]store.GroupInvite, error)
	AcceptInvite(ctx context.Context, uid, gid string) (groups.View, error)
	DeclineInvite(ctx context.Context, uid, gid string) error
}

// InviteView is one pending invitation in REST answers.
type InviteView struct {
	GroupID   string `json:"group_id"`
	From      string `json:"from"`
	CreatedAt string `json:"created_at"`
}

func (a *api) routeInvites(r gin.IRoutes) {
	if a.opts.Invites == nil {
		return
	}
	r.GET("/invites", a.listInvites)
	r.POST("/invites/:group_id/accept", a.acceptInvite)
	r.DELETE("/invites/:group_id", a.declineInvite)
}

func (a *api) listInvites(c *gin.Context) {
	invs, err := a.opts.Invites.Invites(c.Request.Context(), c.GetString(userKey))
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]InviteView, len(invs))
	for i, inv := range invs {
		out[i] = InviteView{GroupID: inv.GroupID, From: inv.From, CreatedAt: inv.CreatedAt.UTC().Format(time.RFC3339Nano)}
	}
	c.JSON(http.StatusOK, gin.H{"invites": out})
}

// acceptInvite answers POST /v1/invites/{group_id}/accept with the group,
// now with the caller as a member.
func (a *api) acceptInvite(c *gin.Context) {
	v, err := a.opts.Invites.AcceptInvite(c.Request.Context(), c.GetString(userKey), c.Param("group_id"))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, v)
}

func (a *api) declineInvite(c *gin.Context) {
	if err := a.opts.Invites.DeclineInvite(c.Request.Context(), c.GetString(userKey), c.Param("group_id")); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
