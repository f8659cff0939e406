package api

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/services/retention"
)

// Retention is what the API needs from the retention service.
type Retention interface {
	Get(ctx context.Context, uid, chat string) (retention.Setting, error)
	Set(ctx context.Context, uid, chat string, period time.Duration) (retention.Setting, error)
}

func (a *api) routeRetention(r gin.IRoutes) {
	if a.opts.Retention == nil {
		return
	}
	r.GET("/chats/:chat/retention", a.getRetention)
	r.PUT("/chats/:chat/retention", a.putRetention)
}

// retentionView is a chat's retention as its caller sees it, in seconds:
// their own setting (the group's in a group; 0 = the server default) and
// the period in force (0 = forever).
type retentionView struct {
	Seconds          int64 `json:"seconds"`
	EffectiveSeconds int64 `json:"effective_seconds"`
}

func viewRetention(s retention.Setting) retentionView {
	return retentionView{Seconds: int64(s.Own / time.Second), EffectiveSeconds: int64(s.Effective / time.Second)}
}

// maxRetentionSeconds keeps the conversion to a Duration from overflowing;
// the service applies its own, smaller bound.
const maxRetentionSeconds = int64(1<<63-1) / int64(time.Second)

func decodeRetention(body io.Reader) (time.Duration, error) {
	var in struct {
		Seconds *int64 `json:"seconds"`
	}
	if err := decodeJSON(body, &in); err != nil {
		return 0, err
	}
	switch {
	case in.Seconds == nil:
		return 0, invalid("seconds", "seconds is required (0 = the server default)")
	case *in.Seconds < 0 || *in.Seconds > maxRetentionSeconds:
		return 0, invalid("seconds", "seconds must be 0 (the server default) or a positive number of seconds")
	}
	return time.Duration(*in.Seconds) * time.Second, nil
}

func (a *api) getRetention(c *gin.Context) {
	s, err := a.opts.Retention.Get(c.Request.Context(), c.GetString(userKey), c.Param("chat"))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewRetention(s))
}

func (a *api) putRetention(c *gin.Context) {
	p, err := decodeRetention(c.Request.Body)
	if err != nil {
		fail(c, err)
		return
	}
	s, err := a.opts.Retention.Set(c.Request.Context(), c.GetString(userKey), c.Param("chat"), p)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, viewRetention(s))
}
