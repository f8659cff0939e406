package api

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/auth"
	"github.com/mqchat/mqchat/store"
)

// Lifecycle is what the API needs from the account lifecycle service.
type Lifecycle interface {
	// DeleteOwn deletes uid's account once password confirms it.
	DeleteOwn(ctx context.Context, uid, password string) error
	// Account returns an account by id, deleted ones included.
	Account(ctx context.Context, uid string) (store.User, error)
}

func (a *api) routeLifecycle(r *gin.RouterGroup) {
	if a.opts.Lifecycle == nil {
		return
	}
	r.DELETE("/me", a.deleteMe)
	r.GET("/users/:user_id", a.userOne)
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
		abort(c, http.StatusBadRequest, "invalid_password", "password: required to delete the account")
		return
	}
	err := a.opts.Lifecycle.DeleteOwn(c.Request.Context(), c.GetString(userKey), in.Password)
	var throttled *auth.ThrottledError
	switch {
	case err == nil:
		c.Status(http.StatusNoContent)
	case errors.Is(err, auth.ErrInvalidCredentials):
		// 403, not 401: the token is fine, the confirmation is not.
		abort(c, http.StatusForbidden, "invalid_credentials", "wrong password")
	case errors.As(err, &throttled):
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(throttled.RetryAfter.Seconds()))))
		abort(c, http.StatusTooManyRequests, "rate_limited", "too many wrong passwords, retry later")
	default:
		a.authError(c, err)
	}
}

// UserView is what GET /v1/users/{user_id} tells.
type UserView struct {
	UserID   string `json:"user_id"`
	Username string `json:"username,omitempty"`
	Deleted  bool   `json:"deleted"`
	// DeletedAt is when a deleted account went.
	DeletedAt *time.Time `json:"deleted_at,omitempty"`
}

// userOne answers GET /v1/users/{user_id}. A deleted account answers
// "deleted" (without its name) to anyone, so a message's `from` in history
// can always be explained; a live one answers to itself and to users who
// share a chat with it, and 404 to everyone else, exactly like an id that
// never existed.
func (a *api) userOne(c *gin.Context) {
	me, id := c.GetString(userKey), c.Param("user_id")
	notFound := func() { abort(c, http.StatusNotFound, "not_found", "no such user") }
	if !ids.ValidUserID(id) {
		notFound()
		return
	}
	u, err := a.opts.Lifecycle.Account(c.Request.Context(), id)
	switch {
	case errors.Is(err, auth.ErrUnknownUser):
		notFound()
		return
	case err != nil:
		a.internal(c, err)
		return
	}
	if u.Deleted() {
		at := u.DeletedAt
		c.JSON(http.StatusOK, UserView{UserID: u.ID, Deleted: true, DeletedAt: &at})
		return
	}
	visible := id == me
	if !visible && a.opts.Relations != nil {
		if visible, err = a.opts.Relations.SharesChat(c.Request.Context(), me, id); err != nil {
			a.internal(c, err)
			return
		}
	}
	if !visible {
		notFound()
		return
	}
	c.JSON(http.StatusOK, UserView{UserID: u.ID, Username: u.Username})
}
