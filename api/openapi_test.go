package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"go.yaml.in/yaml/v3"

	"github.com/mqchat/mqchat/blob"
	"github.com/mqchat/mqchat/services/attachments"
	"github.com/mqchat/mqchat/services/auth"
	"github.com/mqchat/mqchat/services/devicemsg"
	"github.com/mqchat/mqchat/services/e2ekeys"
	"github.com/mqchat/mqchat/services/people"
	"github.com/mqchat/mqchat/services/presence"
	"github.com/mqchat/mqchat/services/retention"
	"github.com/mqchat/mqchat/store"
)

type stubPresence struct{}

func (stubPresence) View(string) presence.View { return presence.View{} }

type stubDevices struct{}

func (stubDevices) PutDevice(context.Context, store.Device) error           { return nil }
func (stubDevices) DeleteDevice(context.Context, string, string) error      { return nil }
func (stubDevices) Devices(context.Context, string) ([]store.Device, error) { return nil, nil }

type stubPeople struct{}

func (stubPeople) Lookup(context.Context, string, string) (people.Found, error) {
	return people.Found{}, nil
}
func (stubPeople) Get(context.Context, string, string) (people.View, error) {
	return people.View{}, nil
}
func (stubPeople) Mine(context.Context, string) (people.Own, error) { return people.Own{}, nil }
func (stubPeople) Update(context.Context, string, people.Patch) (people.Own, error) {
	return people.Own{}, nil
}

type stubSessions struct{}

func (stubSessions) Logout(context.Context, string, string) error { return nil }
func (stubSessions) RevokeAll(context.Context, string) error      { return nil }
func (stubSessions) Sessions(context.Context, string, string) ([]auth.SessionInfo, error) {
	return nil, nil
}
func (stubSessions) ChangePassword(context.Context, string, string, string, string) (auth.Tokens, error) {
	return auth.Tokens{}, nil
}

type stubLifecycle struct{}

func (stubLifecycle) DeleteOwn(context.Context, string, string) error { return nil }

type stubKeys struct{}

func (stubKeys) Publish(context.Context, string, string, e2ekeys.Upload) (e2ekeys.Published, error) {
	return e2ekeys.Published{}, nil
}
func (stubKeys) Delete(context.Context, string, string) error { return nil }
func (stubKeys) Devices(context.Context, string, string) (e2ekeys.DeviceList, error) {
	return e2ekeys.DeviceList{}, nil
}
func (stubKeys) Claim(context.Context, string, string, string) (e2ekeys.Bundles, error) {
	return e2ekeys.Bundles{}, nil
}

type stubDeviceMessages struct{}

func (stubDeviceMessages) Send(context.Context, string, devicemsg.Envelope) (devicemsg.Result, error) {
	return devicemsg.Result{}, nil
}
func (stubDeviceMessages) Pending(context.Context, string, string, uint64, int) ([]store.DeviceMessage, error) {
	return nil, nil
}
func (stubDeviceMessages) Ack(context.Context, string, string, uint64) (int, error) { return 0, nil }

type stubAttachments struct{}

func (stubAttachments) MaxBytes() int64 { return 1 }
func (stubAttachments) Upload(context.Context, string, io.Reader) (store.Attachment, error) {
	return store.Attachment{}, nil
}
func (stubAttachments) Get(context.Context, string, string) (store.Attachment, error) {
	return store.Attachment{}, nil
}
func (stubAttachments) Open(context.Context, string, int64) (io.ReadCloser, blob.Info, error) {
	return nil, blob.Info{}, blob.ErrNotFound
}
func (stubAttachments) PresignGet(context.Context, string) (string, error) { return "", nil }
func (stubAttachments) Presign(context.Context, string) (attachments.Presigned, error) {
	return attachments.Presigned{}, nil
}
func (stubAttachments) Confirm(context.Context, string, string) (store.Attachment, error) {
	return store.Attachment{}, nil
}

type stubRelations struct{}

func (stubRelations) SharesChat(context.Context, string, string) (bool, error) { return false, nil }

// TestOpenAPICoversRoutes fails when a route is added without documenting it
// (or documented without existing), so the served document cannot drift.
func TestOpenAPICoversRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	engine := New(Options{Presence: stubPresence{}, Relations: stubRelations{}, Devices: stubDevices{}, People: stubPeople{}, Sessions: stubSessions{}, Lifecycle: stubLifecycle{}, Blocks: stubBlocks{}, Privacy: stubPrivacy{}, ChatRequests: stubBlocks{}, Invites: stubBlocks{}, Keys: stubKeys{}, DeviceMessages: stubDeviceMessages{}, Attachments: stubAttachments{}, Retention: retention.New(openStore(t), retention.Options{}), Metrics: gin.New(), Discovery: func() []DiscoveryNode { return nil }}).(*gin.Engine)
	rec := httptest.NewRecorder()
	engine.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/openapi.yaml", nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Body.String(), "openapi: 3.1") {
		t.Fatalf("GET /v1/openapi.yaml = %d %.40q", rec.Code, rec.Body.String())
	}
	served := map[string]bool{}
	for _, r := range engine.Routes() {
		parts := strings.Split(r.Path, "/")
		for i, p := range parts {
			if name, ok := strings.CutPrefix(p, ":"); ok {
				parts[i] = "{" + name + "}"
			}
		}
		served[r.Method+" "+strings.Join(parts, "/")] = true
	}
	for route := range served {
		if !documented[route] {
			t.Errorf("route %s is served but not in openapi.yaml", route)
		}
	}
	for route := range documented {
		if !served[route] {
			t.Errorf("openapi.yaml documents %s, which is not served", route)
		}
	}
}
