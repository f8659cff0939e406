package api

import (
	"context"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/services/consent"
)

// Privacy is what the API needs from the consent service for settings.
type Privacy interface {
	Privacy(ctx context.Context, uid string) (consent.PrivacyView, error)
	SetPrivacy(ctx context.Context, uid string, ch consent.PrivacyChange) (consent.PrivacyView, error)
}

type privacyBody struct {
	Presence    *string `json:"presence"`
	RequestPush *bool   `json:"request_push"`
}

// decodePrivacy reads PATCH /v1/me/privacy; the values are the service's
// to check.
func decodePrivacy(body io.Reader) (consent.PrivacyChange, error) {
	var in privacyBody
	if err := decodeJSON(body, &in); err != nil {
		return consent.PrivacyChange{}, err
	}
	if in.Presence == nil && in.RequestPush == nil {
		return consent.PrivacyChange{}, invalid("presence", "nothing to change: set presence or request_push")
	}
	return consent.PrivacyChange{Presence: in.Presence, RequestPush: in.RequestPush}, nil
}

func (a *api) getPrivacy(c *gin.Context) {
	v, err := a.opts.Privacy.Privacy(c.Request.Context(), c.GetString(userKey))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, v)
}

func (a *api) patchPrivacy(c *gin.Context) {
	ch, err := decodePrivacy(c.Request.Body)
	if err != nil {
		fail(c, err)
		return
	}
	v, err := a.opts.Privacy.SetPrivacy(c.Request.Context(), c.GetString(userKey), ch)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, v)
}
