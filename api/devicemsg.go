package api

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/services/devicemsg"
	"github.com/mqchat/mqchat/store"
)

// DeviceMessages is per-device store-and-forward (services/devicemsg).
type DeviceMessages interface {
	Send(ctx context.Context, from string, env devicemsg.Envelope) (devicemsg.Result, error)
	Pending(ctx context.Context, uid, device string, after uint64, limit int) ([]store.DeviceMessage, error)
	Ack(ctx context.Context, uid, device string, upTo uint64) (int, error)
}

func (a *api) routeDeviceMessages(r gin.IRoutes) {
	if a.opts.DeviceMessages == nil {
		return
	}
	r.POST("/device-messages", a.sendDeviceMessage)
	r.GET("/devices/:device_id/messages", a.pendingDeviceMessages)
	r.POST("/devices/:device_id/messages/ack", a.ackDeviceMessages)
}

// deviceMessageSent is the answer to POST /v1/device-messages.
type deviceMessageSent struct {
	ToDevice  devicemsg.Address `json:"to_device"`
	Seq       uint64            `json:"seq"`
	SentAt    string            `json:"sent_at"`
	Duplicate bool              `json:"duplicate"`
}

func (a *api) sendDeviceMessage(c *gin.Context) {
	env, err := decodeDeviceMessage(c.Request.Body)
	if err != nil {
		fail(c, err)
		return
	}
	res, err := a.opts.DeviceMessages.Send(c.Request.Context(), c.GetString(userKey), env)
	if err != nil {
		a.deviceMessageError(c, err)
		return
	}
	status := http.StatusCreated
	if res.Duplicate {
		status = http.StatusOK
	}
	c.JSON(status, deviceMessageSent{
		ToDevice: res.To, Seq: res.Seq, SentAt: res.SentAt.UTC().Format(chat.SentAtLayout), Duplicate: res.Duplicate,
	})
}

// pendingDeviceMessages answers GET /v1/devices/{device_id}/messages: the
// caller's device's messages after ?after=, oldest first.
func (a *api) pendingDeviceMessages(c *gin.Context) {
	after, limit, err := parseDeviceMessagesQuery(c.Request.URL.Query())
	if err != nil {
		fail(c, err)
		return
	}
	device := c.Param("device_id")
	if !ids.ValidDeviceID(device) {
		fail(c, invalid("device_id", "device_id must be 1 to 64 printable ASCII characters without / + #"))
		return
	}
	msgs, err := a.opts.DeviceMessages.Pending(c.Request.Context(), c.GetString(userKey), device, after, limit)
	if err != nil {
		a.deviceMessageError(c, err)
		return
	}
	out := make([]devicemsg.View, len(msgs))
	for i, m := range msgs {
		out[i] = devicemsg.ViewOf(m)
	}
	c.JSON(http.StatusOK, gin.H{"messages": out})
}

// ackDeviceMessages answers POST /v1/devices/{device_id}/messages/ack:
// deletes the caller's device's messages up to seq.
func (a *api) ackDeviceMessages(c *gin.Context) {
	var in ackBody
	if !bindJSON(c, &in) {
		return
	}
	device := c.Param("device_id")
	if !ids.ValidDeviceID(device) {
		fail(c, invalid("device_id", "device_id must be 1 to 64 printable ASCII characters without / + #"))
		return
	}
	n, err := a.opts.DeviceMessages.Ack(c.Request.Context(), c.GetString(userKey), device, in.Seq)
	if err != nil {
		a.deviceMessageError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"deleted": n})
}

// deviceMessageError maps refusals as chatError does, except that an
// unknown recipient is a plain 404 not_found, as for the key directory.
func (a *api) deviceMessageError(c *gin.Context, err error) {
	if ce, ok := errors.AsType[*chat.Error](err); ok && ce.Code == chat.CodeUnknownRecipient {
		err = &chat.Error{Code: chat.CodeNotFound, Field: ce.Field, Message: ce.Message}
	}
	fail(c, err)
}

// decodeDeviceMessage reads POST /v1/device-messages; the service
// validates the fields.
func decodeDeviceMessage(body io.Reader) (devicemsg.Envelope, error) {
	var env devicemsg.Envelope
	if err := decodeJSON(body, &env); err != nil {
		return devicemsg.Envelope{}, err
	}
	return env, nil
}

// defaultDevicePage is the page of GET …/messages without ?limit=.
const defaultDevicePage = 100

// parseDeviceMessagesQuery reads ?after=&limit= (1-200, default 100).
func parseDeviceMessagesQuery(q url.Values) (after uint64, limit int, err error) {
	if after, err = parseSeq(q, "after"); err != nil {
		return 0, 0, err
	}
	limit = defaultDevicePage
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > devicemsg.MaxPage {
			return 0, 0, invalid("limit", "limit must be an integer from 1 to 200")
		}
		limit = n
	}
	return after, limit, nil
}
