package api

import (
	"context"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/services/groups"
	"github.com/mqchat/mqchat/store"
)

// Groups is what the API needs from the groups service.
type Groups interface {
	Create(ctx context.Context, actor, name string, members []string) (groups.View, error)
	Get(ctx context.Context, actor, gid string) (groups.View, error)
	Rename(ctx context.Context, actor, gid, name string) (groups.View, error)
	Delete(ctx context.Context, actor, gid string) error
	AddMembers(ctx context.Context, actor, gid string, users []string) (groups.View, error)
	RemoveMember(ctx context.Context, actor, gid, uid string) error
	SetRole(ctx context.Context, actor, gid, uid string, role store.Role) (groups.View, error)
	Mine(ctx context.Context, actor, after string, limit int) ([]groups.View, error)
}

func (a *api) routeGroups(r *gin.RouterGroup) {
	r.POST("/groups", a.createGroup)
	r.GET("/groups", a.myGroups)
	r.GET("/groups/:id", a.getGroup)
	r.PATCH("/groups/:id", a.renameGroup)
	r.DELETE("/groups/:id", a.deleteGroup)
	r.POST("/groups/:id/members", a.addMembers)
	r.PATCH("/groups/:id/members/:user_id", a.setRole)
	r.DELETE("/groups/:id/members/:user_id", a.removeMember)
}

func (a *api) createGroup(c *gin.Context) {
	var in groupBody
	if !bindJSON(c, &in) {
		return
	}
	members, err := in.userIDs()
	if err != nil {
		fail(c, err)
		return
	}
	v, err := a.opts.Groups.Create(c.Request.Context(), c.GetString(userKey), in.Name, members)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, v)
}

func (a *api) getGroup(c *gin.Context) {
	v, err := a.opts.Groups.Get(c.Request.Context(), c.GetString(userKey), c.Param("id"))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, v)
}

func (a *api) renameGroup(c *gin.Context) {
	var in renameBody
	if !bindJSON(c, &in) {
		return
	}
	v, err := a.opts.Groups.Rename(c.Request.Context(), c.GetString(userKey), c.Param("id"), in.Name)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, v)
}

func (a *api) deleteGroup(c *gin.Context) {
	if err := a.opts.Groups.Delete(c.Request.Context(), c.GetString(userKey), c.Param("id")); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (a *api) addMembers(c *gin.Context) {
	var in membersBody
	if !bindJSON(c, &in) {
		return
	}
	if err := in.check(); err != nil {
		fail(c, err)
		return
	}
	v, err := a.opts.Groups.AddMembers(c.Request.Context(), c.GetString(userKey), c.Param("id"), in.UserIDs)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, v)
}

func (a *api) setRole(c *gin.Context) {
	var in roleBody
	if !bindJSON(c, &in) {
		return
	}
	v, err := a.opts.Groups.SetRole(c.Request.Context(), c.GetString(userKey), c.Param("id"), c.Param("user_id"), in.Role)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, v)
}

func (a *api) removeMember(c *gin.Context) {
	if err := a.opts.Groups.RemoveMember(c.Request.Context(), c.GetString(userKey), c.Param("id"), c.Param("user_id")); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (a *api) myGroups(c *gin.Context) {
	after, limit, err := parseGroupsQuery(c.Request.URL.Query())
	if err != nil {
		fail(c, err)
		return
	}
	vs, err := a.opts.Groups.Mine(c.Request.Context(), c.GetString(userKey), after, limit)
	if err != nil {
		fail(c, err)
		return
	}
	out := gin.H{"groups": vs, "next": nil}
	if len(vs) == limit {
		out["next"] = vs[len(vs)-1].GroupID
	}
	c.JSON(http.StatusOK, out)
}
