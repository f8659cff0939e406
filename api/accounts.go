package api

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/services/auth"
)

type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func jsonDecoder(r io.Reader) *json.Decoder {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	return dec
}

func (a *api) register(c *gin.Context) {
	var in credentials
	if !bindJSON(c, &in) {
		return
	}
	tok, err := a.opts.Accounts.Register(c.Request.Context(), in.Username, in.Password)
	if err != nil {
		a.accountError(c, err)
		return
	}
	c.JSON(http.StatusCreated, tok)
}

func (a *api) login(c *gin.Context) {
	var in credentials
	if !bindJSON(c, &in) {
		return
	}
	tok, err := a.opts.Accounts.Login(c.Request.Context(), in.Username, in.Password)
	if err != nil {
		a.accountError(c, err)
		return
	}
	c.JSON(http.StatusOK, tok)
}

func (a *api) refresh(c *gin.Context) {
	var in refreshBody
	if !bindJSON(c, &in) {
		return
	}
	if err := in.check(); err != nil {
		abortRequest(c, err)
		return
	}
	tok, err := a.opts.Accounts.Refresh(c.Request.Context(), in.RefreshToken)
	if err != nil {
		a.accountError(c, err)
		return
	}
	c.JSON(http.StatusOK, tok)
}

func (a *api) me(c *gin.Context) {
	if a.opts.People != nil {
		a.myProfile(c)
		return
	}
	u, err := a.opts.Accounts.User(c.Request.Context(), c.GetString(userKey))
	if err != nil {
		a.accountError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"user_id": u.ID, "username": u.Username, "created_at": u.CreatedAt})
}

func (a *api) accountError(c *gin.Context, err error) {
	var in *auth.InputError
	var throttled *auth.ThrottledError
	switch {
	case errors.As(err, &in):
		abort(c, http.StatusBadRequest, "invalid_"+in.Field, in.Error())
	case errors.Is(err, auth.ErrUsernameTaken):
		abort(c, http.StatusConflict, "username_taken", "username is taken")
	case errors.As(err, &throttled):
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(throttled.RetryAfter.Seconds()))))
		abort(c, http.StatusTooManyRequests, "rate_limited", "too many failed logins for this username, retry later")
	case errors.Is(err, auth.ErrInvalidCredentials):
		abort(c, http.StatusUnauthorized, "invalid_credentials", "invalid username or password")
	default:
		a.authError(c, err)
	}
}
