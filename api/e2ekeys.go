package api

import (
	"context"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/e2ekeys"
)

// KeyDirectory is the end-to-end encryption key directory
// (services/e2ekeys).
type KeyDirectory interface {
	Publish(ctx context.Context, uid, deviceID string, up e2ekeys.Upload) (e2ekeys.Published, error)
	Delete(ctx context.Context, uid, deviceID string) error
	Devices(ctx context.Context, requester, uid string) (e2ekeys.DeviceList, error)
	Claim(ctx context.Context, requester, uid, deviceID string) (e2ekeys.Bundles, error)
}

func (a *api) routeKeys(r gin.IRoutes) {
	if a.opts.Keys == nil {
		return
	}
	r.PUT("/devices/:device_id/keys", a.publishKeys)
	r.DELETE("/devices/:device_id/keys", a.deleteKeys)
	r.GET("/users/:user_id/devices", a.userDevices)
	r.GET("/users/:user_id/keys", a.claimKeys)
}

// publishKeys answers PUT /v1/devices/{device_id}/keys: the caller's device
// publishes its keys (the device id names one of the caller's own).
func (a *api) publishKeys(c *gin.Context) {
	id := c.Param("device_id")
	up, err := decodeKeys(id, c.Request.Body)
	if err != nil {
		fail(c, err)
		return
	}
	out, err := a.opts.Keys.Publish(c.Request.Context(), c.GetString(userKey), id, up)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, out)
}

func (a *api) deleteKeys(c *gin.Context) {
	if err := a.opts.Keys.Delete(c.Request.Context(), c.GetString(userKey), c.Param("device_id")); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// userDevices answers GET /v1/users/{user_id}/devices: the user's devices
// and their long-term keys, claiming nothing.
func (a *api) userDevices(c *gin.Context) {
	out, err := a.opts.Keys.Devices(c.Request.Context(), c.GetString(userKey), c.Param("user_id"))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, out)
}

// claimKeys answers GET /v1/users/{user_id}/keys[?device=]: a bundle per
// device, each with one one-time prekey claimed for the caller.
func (a *api) claimKeys(c *gin.Context) {
	device, err := parseKeysQuery(c.Request.URL.Query())
	if err != nil {
		fail(c, err)
		return
	}
	out, err := a.opts.Keys.Claim(c.Request.Context(), c.GetString(userKey), c.Param("user_id"), device)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, out)
}

// decodeKeys reads PUT /v1/devices/{device_id}/keys; the key directory
// checks the keys themselves.
func decodeKeys(id string, body io.Reader) (e2ekeys.Upload, error) {
	if !ids.ValidDeviceID(id) {
		return e2ekeys.Upload{}, invalid("device_id", "device_id must be 1 to 64 printable ASCII characters without / + #")
	}
	var up e2ekeys.Upload
	if err := decodeJSON(body, &up); err != nil {
		return e2ekeys.Upload{}, err
	}
	return up, nil
}

// parseKeysQuery reads ?device= of GET /v1/users/{user_id}/keys: at most
// one, a valid device id; "" means every device.
func parseKeysQuery(q map[string][]string) (string, error) {
	for k := range q {
		if k != "device" {
			return "", invalid(k, "unknown query parameter "+k+": only device is accepted")
		}
	}
	ds := q["device"]
	switch {
	case len(ds) == 0:
		return "", nil
	case len(ds) > 1 || !ids.ValidDeviceID(ds[0]):
		return "", invalid("device", "device must be one device id: 1 to 64 printable ASCII characters without / + #")
	}
	return ds[0], nil
}
