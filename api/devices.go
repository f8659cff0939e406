package api

import (
	"context"
	"errors"
	"fmt"
	"github.com/mqchat/mqchat/services/chat"
	"net/http"
	"slices"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/store"
)

// Devices is where the API keeps push tokens (store.Devices).
type Devices interface {
	PutDevice(ctx context.Context, d store.Device) error
	DeleteDevice(ctx context.Context, uid, deviceID string) error
	Devices(ctx context.Context, uid string) ([]store.Device, error)
}

const (
	// maxPushToken is far above any FCM registration token (~160 bytes).
	maxPushToken = 4096
	// maxDevices bounds one user's devices: each is a push per message, and
	// the device list is answered as one page.
	maxDevices = 32
)

// DeviceView is a registered device in REST answers.
type DeviceView struct {
	DeviceID  string         `json:"device_id"`
	Platform  store.Platform `json:"platform"`
	PushToken string         `json:"push_token"`
	UpdatedAt string         `json:"updated_at"`
}

func deviceView(d store.Device) DeviceView {
	return DeviceView{DeviceID: d.DeviceID, Platform: d.Platform, PushToken: d.PushToken, UpdatedAt: d.UpdatedAt.UTC().Format(time.RFC3339)}
}

func (a *api) routeDevices(r gin.IRoutes) {
	if a.opts.Devices == nil {
		return
	}
	r.GET("/devices", a.listDevices)
	r.PUT("/devices/:device_id", a.putDevice)
	r.DELETE("/devices/:device_id", a.deleteDevice)
}

// putDevice answers PUT /v1/devices/{device_id}: registers or replaces the
// device's push token. A token registered by another device or account
// moves to this one.
func (a *api) putDevice(c *gin.Context) {
	id := c.Param("device_id")
	in, err := decodeDevice(id, c.Request.Body)
	if err != nil {
		fail(c, err)
		return
	}
	uid := c.GetString(userKey)
	have, err := a.opts.Devices.Devices(c.Request.Context(), uid)
	if err != nil {
		fail(c, err)
		return
	}
	if len(have) >= maxDevices && !slices.ContainsFunc(have, func(d store.Device) bool { return d.DeviceID == id }) {
		fail(c, &chat.Error{Code: chat.CodeConflict, Field: "device_id", Message: fmt.Sprintf(
			"at most %d devices per user: delete one (DELETE /v1/devices/{device_id}) first", maxDevices)})
		return
	}
	d := store.Device{
		UserID: uid, DeviceID: id, Platform: in.Platform, PushToken: in.PushToken,
		UpdatedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
	if err := a.opts.Devices.PutDevice(c.Request.Context(), d); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, deviceView(d))
}

func (a *api) deleteDevice(c *gin.Context) {
	id := c.Param("device_id")
	err := store.ErrNotFound // no device has an id PUT refuses
	if ids.ValidDeviceID(id) {
		err = a.opts.Devices.DeleteDevice(c.Request.Context(), c.GetString(userKey), id)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		fail(c, &chat.Error{Code: chat.CodeNotFound, Field: "device_id", Message: "no such device"})
	case err != nil:
		fail(c, err)
	default:
		c.Status(http.StatusNoContent)
	}
}

// listDevices answers GET /v1/devices: the caller's devices, ordered by id.
// A user has a handful of devices, so the list is one page.
func (a *api) listDevices(c *gin.Context) {
	ds, err := a.opts.Devices.Devices(c.Request.Context(), c.GetString(userKey))
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]DeviceView, len(ds))
	for i, d := range ds {
		out[i] = deviceView(d)
	}
	c.JSON(http.StatusOK, gin.H{"devices": out})
}
