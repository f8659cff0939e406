package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/services/people"
)

// People is what the API needs from the people service: username lookup
// and profiles.
type People interface {
	Lookup(ctx context.Context, requester, username string) (people.Found, error)
	Get(ctx context.Context, requester, uid string) (people.View, error)
	Mine(ctx context.Context, uid string) (people.Own, error)
	Update(ctx context.Context, uid string, patch people.Patch) (people.Own, error)
}

func (a *api) routePeople(r gin.IRoutes) {
	if a.opts.People == nil {
		return
	}
	r.GET("/users", a.lookupUser)
	r.GET("/users/:user_id", a.userProfile)
	r.PATCH("/me", a.updateMe)
}

// lookupUser answers GET /v1/users?username=: exactly one username, and
// the same 404 for a name that is unknown and one that is not discoverable.
func (a *api) lookupUser(c *gin.Context) {
	q := c.Request.URL.Query()
	names, ok := q["username"]
	if !ok || len(names) != 1 || len(q) != 1 {
		fail(c, invalid("username", "give exactly one username: /v1/users?username={name}"))
		return
	}
	found, err := a.opts.People.Lookup(c.Request.Context(), c.GetString(userKey), names[0])
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, found)
}

func (a *api) userProfile(c *gin.Context) {
	v, err := a.opts.People.Get(c.Request.Context(), c.GetString(userKey), c.Param("user_id"))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, v)
}

// myProfile answers GET /v1/me when profiles are enabled.
func (a *api) myProfile(c *gin.Context) {
	own, err := a.opts.People.Mine(c.Request.Context(), c.GetString(userKey))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, own)
}

func (a *api) updateMe(c *gin.Context) {
	// encoding/json would quietly turn invalid UTF-8 into U+FFFD, and every
	// other user would then see a mangled profile; refuse it instead.
	raw, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if !errors.As(err, &tooBig) {
			err = invalid("", "request body is unreadable")
		}
		fail(c, err)
		return
	}
	if !utf8.Valid(raw) {
		fail(c, invalid("", "request body must be UTF-8"))
		return
	}
	var in people.Patch
	if err := decodeJSON(bytes.NewReader(raw), &in); err != nil {
		fail(c, err)
		return
	}
	own, err := a.opts.People.Update(c.Request.Context(), c.GetString(userKey), in)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, own)
}
