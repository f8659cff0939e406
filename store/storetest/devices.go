package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func deviceTests() []testCase {
	return []testCase{
		{"PutAndList", testDevicePutAndList},
		{"ReplaceKeepsOneEntry", testDeviceReplace},
		{"TokenMovesToNewOwner", testDeviceTokenMoves},
		{"StaleTokenDoesNotEvict", testDeviceStaleToken},
		{"Delete", testDeviceDelete},
		{"DeletePushTokenOnlyWhenCurrent", testDeviceDeletePushToken},
		{"CanceledContext", testDeviceCanceled},
	}
}

func newDevice(uid, id string, p store.Platform, token string) store.Device {
	return store.Device{UserID: uid, DeviceID: id, Platform: p, PushToken: token,
		UpdatedAt: time.Now().Truncate(time.Millisecond)}
}

func mustPutDevice(t *testing.T, s store.Store, d store.Device) {
	t.Helper()
	if err := s.PutDevice(t.Context(), d); err != nil {
		t.Fatalf("PutDevice(%s/%s): %v", d.UserID, d.DeviceID, err)
	}
}

// checkDevices fails unless uid's devices are exactly want, in order.
func checkDevices(t *testing.T, s store.Store, uid string, want ...store.Device) {
	t.Helper()
	got, err := s.Devices(t.Context(), uid)
	if err != nil {
		t.Fatalf("Devices(%q): %v", uid, err)
	}
	if got == nil {
		t.Fatalf("Devices(%q) = nil, want a non-nil slice", uid)
	}
	if len(got) != len(want) {
		t.Fatalf("Devices(%q) = %+v, want %+v", uid, got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.UserID != w.UserID || g.DeviceID != w.DeviceID || g.Platform != w.Platform ||
			g.PushToken != w.PushToken || !sameInstant(g.UpdatedAt, w.UpdatedAt) {
			t.Fatalf("Devices(%q)[%d] = %+v, want %+v", uid, i, g, w)
		}
	}
}

func testDevicePutAndList(t *testing.T, s store.Store) {
	phone := newDevice("u1", "phone", store.PlatformAndroid, "tok-phone")
	laptop := newDevice("u1", "laptop", store.PlatformWeb, "tok-laptop")
	other := newDevice("u2", "ipad", store.PlatformIOS, "tok-ipad")
	for _, d := range []store.Device{phone, laptop, other} {
		mustPutDevice(t, s, d)
	}
	checkDevices(t, s, "u1", laptop, phone)
	checkDevices(t, s, "u2", other)
	checkDevices(t, s, "nobody")
}

func testDeviceReplace(t *testing.T, s store.Store) {
	mustPutDevice(t, s, newDevice("u1", "phone", store.PlatformAndroid, "tok-old"))
	updated := newDevice("u1", "phone", store.PlatformIOS, "tok-new")
	updated.UpdatedAt = updated.UpdatedAt.Add(time.Second)
	mustPutDevice(t, s, updated)
	checkDevices(t, s, "u1", updated)
	// The replaced token no longer points at the device: registering it
	// elsewhere must leave this device alone.
	elsewhere := newDevice("u2", "tablet", store.PlatformAndroid, "tok-old")
	mustPutDevice(t, s, elsewhere)
	checkDevices(t, s, "u1", updated)
	checkDevices(t, s, "u2", elsewhere)
}

func testDeviceTokenMoves(t *testing.T, s store.Store) {
	mustPutDevice(t, s, newDevice("u1", "phone", store.PlatformAndroid, "shared-token"))
	keep := newDevice("u1", "laptop", store.PlatformWeb, "tok-laptop")
	mustPutDevice(t, s, keep)
	// The same phone logs in as another user: u1 must stop getting pushes.
	moved := newDevice("u2", "phone", store.PlatformAndroid, "shared-token")
	mustPutDevice(t, s, moved)
	checkDevices(t, s, "u1", keep)
	checkDevices(t, s, "u2", moved)
	// And within one user, a token re-registered under a new device id.
	again := newDevice("u2", "phone-reinstalled", store.PlatformAndroid, "shared-token")
	mustPutDevice(t, s, again)
	checkDevices(t, s, "u2", again)
}

func testDeviceStaleToken(t *testing.T, s store.Store) {
	mustPutDevice(t, s, newDevice("u1", "phone", store.PlatformAndroid, "t1"))
	current := newDevice("u1", "phone", store.PlatformAndroid, "t2")
	mustPutDevice(t, s, current)
	removed, err := s.DeletePushToken(t.Context(), "u1", "phone", "t1")
	if err != nil {
		t.Fatalf("DeletePushToken(stale): %v", err)
	}
	if removed {
		t.Fatal("DeletePushToken with a stale token removed the device")
	}
	checkDevices(t, s, "u1", current)
}

func testDeviceDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	keep := newDevice("u1", "b", store.PlatformWeb, "tok-b")
	mustPutDevice(t, s, newDevice("u1", "a", store.PlatformAndroid, "tok-a"))
	mustPutDevice(t, s, keep)
	if err := s.DeleteDevice(ctx, "u1", "a"); err != nil {
		t.Fatalf("DeleteDevice: %v", err)
	}
	checkDevices(t, s, "u1", keep)
	if err := s.DeleteDevice(ctx, "u1", "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteDevice again: err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteDevice(ctx, "u2", "b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteDevice of another user's device id: err = %v, want ErrNotFound", err)
	}
	checkDevices(t, s, "u1", keep)
	// The deleted device's token is free again.
	reused := newDevice("u3", "x", store.PlatformAndroid, "tok-a")
	mustPutDevice(t, s, reused)
	checkDevices(t, s, "u3", reused)
	checkDevices(t, s, "u1", keep)
}

func testDeviceDeletePushToken(t *testing.T, s store.Store) {
	ctx := t.Context()
	keep := newDevice("u1", "laptop", store.PlatformWeb, "tok-laptop")
	mustPutDevice(t, s, newDevice("u1", "phone", store.PlatformAndroid, "tok-phone"))
	mustPutDevice(t, s, keep)
	cases := []struct {
		uid, device, token string
		want               bool
	}{
		{"u1", "phone", "tok-laptop", false}, // token of another device
		{"u2", "phone", "tok-phone", false},  // another user
		{"u1", "ghost", "tok-phone", false},  // unknown device
		{"u1", "phone", "tok-phone", true},
		{"u1", "phone", "tok-phone", false}, // already gone
	}
	for _, c := range cases {
		got, err := s.DeletePushToken(ctx, c.uid, c.device, c.token)
		if err != nil {
			t.Fatalf("DeletePushToken(%s, %s, %s): %v", c.uid, c.device, c.token, err)
		}
		if got != c.want {
			t.Fatalf("DeletePushToken(%s, %s, %s) = %v, want %v", c.uid, c.device, c.token, got, c.want)
		}
	}
	checkDevices(t, s, "u1", keep)
}

func testDeviceCanceled(t *testing.T, s store.Store) {
	phone := newDevice("u1", "phone", store.PlatformAndroid, "tok")
	mustPutDevice(t, s, phone)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]func() error{
		"PutDevice": func() error {
			return s.PutDevice(ctx, newDevice("u1", "other", store.PlatformWeb, "tok2"))
		},
		"Devices":      func() error { _, err := s.Devices(ctx, "u1"); return err },
		"DeleteDevice": func() error { return s.DeleteDevice(ctx, "u1", "phone") },
		"DeletePushToken": func() error {
			_, err := s.DeletePushToken(ctx, "u1", "phone", "tok")
			return err
		},
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with canceled context: err = %v, want context.Canceled", name, err)
		}
	}
	checkDevices(t, s, "u1", phone)
}
