package api

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"
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
		fail(c, err)
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
		fail(c, err)
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
		fail(c, err)
		return
	}
	tok, err := a.opts.Accounts.Refresh(c.Request.Context(), in.RefreshToken)
	if err != nil {
		fail(c, err)
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
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"user_id": u.ID, "username": u.Username, "created_at": u.CreatedAt})
}
