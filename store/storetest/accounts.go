package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mqchat/mqchat/store"
)

func accountTests() []testCase {
	return []testCase{
		{"DisableAndEnable", testAccountDisable},
		{"DisableUnknown", testAccountDisableUnknown},
		{"DeleteLeavesTombstone", testAccountDelete},
		{"DeleteRemovesDevicesOnly", testAccountDeleteDevices},
		{"DeleteRemovesOwnData", testAccountDeleteOwnData},
		{"DeleteTwiceOrUnknown", testAccountDeleteTwice},
		{"DeleteRacesDisable", testAccountDeleteRacesDisable},
		{"ListPages", testAccountList},
	}
}

func userState(t *testing.T, s store.Store, uid string) store.User {
	t.Helper()
	u, err := s.UserByID(t.Context(), uid)
	if err != nil {
		t.Fatalf("UserByID(%q): %v", uid, err)
	}
	return u
}

func testAccountDisable(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := newUser("u1", "alice")
	mustCreateUser(t, s, alice)
	mustCreateUser(t, s, newUser("u2", "bob"))
	if u := userState(t, s, "u1"); u.Disabled || u.Deleted() || !u.Active() {
		t.Fatalf("new user: %+v, want active", u)
	}
	for _, disabled := range []bool{true, true, false, false, true} {
		if err := s.SetUserDisabled(ctx, "u1", disabled); err != nil {
			t.Fatalf("SetUserDisabled(%v): %v", disabled, err)
		}
		for _, get := range []func() (store.User, error){
			func() (store.User, error) { return s.UserByID(ctx, "u1") },
			func() (store.User, error) { return s.UserByUsername(ctx, "alice") },
			func() (store.User, error) { us, err := s.UsersByID(ctx, []string{"u1"}); return us["u1"], err },
		} {
			u, err := get()
			if err != nil {
				t.Fatal(err)
			}
			checkUser(t, "disabled user keeps its fields", u, alice)
			if u.Disabled != disabled || u.Active() == disabled || u.Deleted() {
				t.Fatalf("after SetUserDisabled(%v): %+v", disabled, u)
			}
		}
		if u := userState(t, s, "u2"); !u.Active() {
			t.Fatalf("bystander changed: %+v", u)
		}
	}
}

func testAccountDisableUnknown(t *testing.T, s store.Store) {
	if err := s.SetUserDisabled(t.Context(), "nobody", true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetUserDisabled(nobody): err = %v, want ErrNotFound", err)
	}
	mustCreateUser(t, s, newUser("u1", "alice"))
	if err := s.DeleteUser(t.Context(), "u1", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUserDisabled(t.Context(), "u1", true); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("SetUserDisabled(deleted): err = %v, want ErrNotFound", err)
	}
	if u := userState(t, s, "u1"); u.Disabled || !u.Deleted() {
		t.Fatalf("deleted user after disable: %+v", u)
	}
}

// The tombstone keeps id, username (reserved) and creation time, loses the
// password hash and the disabled flag.
func testAccountDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := newUser("u1", "alice")
	mustCreateUser(t, s, alice)
	if err := s.SetUserDisabled(ctx, "u1", true); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 891_234_567, time.UTC)
	if err := s.DeleteUser(ctx, "u1", at); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	for name, get := range map[string]func() (store.User, error){
		"UserByID":       func() (store.User, error) { return s.UserByID(ctx, "u1") },
		"UserByUsername": func() (store.User, error) { return s.UserByUsername(ctx, "alice") },
		"UsersByID": func() (store.User, error) {
			us, err := s.UsersByID(ctx, []string{"u1"})
			if _, ok := us["u1"]; !ok && err == nil {
				err = fmt.Errorf("tombstone absent")
			}
			return us["u1"], err
		},
	} {
		u, err := get()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if u.ID != "u1" || u.Username != "alice" || len(u.PasswordHash) != 0 || !sameInstant(u.CreatedAt, alice.CreatedAt) ||
			u.Disabled || !u.Deleted() || !sameInstant(u.DeletedAt, at) || u.Active() {
			t.Fatalf("%s: tombstone %+v", name, u)
		}
	}
	if err := s.CreateUser(ctx, newUser("u9", "alice")); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateUser with a deleted user's name: err = %v, want ErrConflict (reserved)", err)
	}
}

// What only the user made (profile, privacy settings, block list) goes
// with the account; others' blocks of it stay theirs.
func testAccountDeleteOwnData(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreateUser(t, s, newUser("u1", "alice"))
	mustCreateUser(t, s, newUser("u2", "bob"))
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, err := range []error{
		s.PutProfile(ctx, store.Profile{UserID: "u1", DisplayName: "Alice", Discoverable: true, UpdatedAt: now}),
		s.PutPrivacy(ctx, store.Privacy{UserID: "u1", Presence: store.PresenceNobody, UpdatedAt: now}),
		s.PutBlock(ctx, store.Block{UserID: "u1", BlockedID: "u2", CreatedAt: now}),
		s.PutBlock(ctx, store.Block{UserID: "u2", BlockedID: "u1", CreatedAt: now}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteUser(ctx, "u1", now); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if _, err := s.Profile(ctx, "u1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("profile after delete: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Privacy(ctx, "u1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("privacy after delete: err = %v, want ErrNotFound", err)
	}
	if bs, err := s.BlocksOf(ctx, "u1"); err != nil || len(bs) != 0 {
		t.Fatalf("blocks of the deleted user: %v, %v", bs, err)
	}
	if bs, err := s.BlocksOf(ctx, "u2"); err != nil || len(bs) != 1 {
		t.Fatalf("bob's block of the deleted user: %v, %v", bs, err)
	}
}

func testAccountDeleteDevices(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreateUser(t, s, newUser("u1", "alice"))
	mustCreateUser(t, s, newUser("u2", "bob"))
	mustPutDevice(t, s, newDevice("u1", "phone", store.PlatformAndroid, "tok-a1"))
	mustPutDevice(t, s, newDevice("u1", "tablet", store.PlatformIOS, "tok-a2"))
	bobs := newDevice("u2", "phone", store.PlatformAndroid, "tok-b1")
	mustPutDevice(t, s, bobs)
	if err := s.DeleteUser(ctx, "u1", time.Now()); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	checkDevices(t, s, "u1")
	checkDevices(t, s, "u2", bobs)
	// Its push tokens are free: another device takes one without touching
	// anything of bob's.
	moved := newDevice("u2", "laptop", store.PlatformWeb, "tok-a1")
	mustPutDevice(t, s, moved)
	checkDevices(t, s, "u2", moved, bobs)
	if removed, err := s.DeletePushToken(ctx, "u1", "phone", "tok-a1"); err != nil || removed {
		t.Fatalf("DeletePushToken of a deleted user's device = %v, %v; want false, nil", removed, err)
	}
}

func testAccountDeleteTwice(t *testing.T, s store.Store) {
	ctx := t.Context()
	if err := s.DeleteUser(ctx, "nobody", time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteUser(nobody): err = %v, want ErrNotFound", err)
	}
	mustCreateUser(t, s, newUser("u1", "alice"))
	first := time.Now().Add(-time.Minute)
	if err := s.DeleteUser(ctx, "u1", first); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "u1", time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second DeleteUser: err = %v, want ErrNotFound", err)
	}
	if u := userState(t, s, "u1"); !sameInstant(u.DeletedAt, first) {
		t.Fatalf("second delete moved DeletedAt to %v, want %v", u.DeletedAt, first)
	}
}

// A disable racing a delete never resurrects the account's password or
// leaves a disabled tombstone.
func testAccountDeleteRacesDisable(t *testing.T, s store.Store) {
	const users = 10
	for i := range users {
		mustCreateUser(t, s, newUser(fmt.Sprintf("u%d", i), fmt.Sprintf("user%d", i)))
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range users {
		uid := fmt.Sprintf("u%d", i)
		wg.Go(func() {
			<-start
			if err := s.DeleteUser(t.Context(), uid, time.Now()); err != nil {
				t.Errorf("DeleteUser(%s): %v", uid, err)
			}
		})
		wg.Go(func() {
			<-start
			if err := s.SetUserDisabled(t.Context(), uid, true); err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Errorf("SetUserDisabled(%s): %v", uid, err)
			}
		})
	}
	close(start)
	wg.Wait()
	for i := range users {
		if u := userState(t, s, fmt.Sprintf("u%d", i)); !u.Deleted() || u.Disabled || len(u.PasswordHash) != 0 {
			t.Fatalf("after the race: %+v, want a clean tombstone", u)
		}
	}
}

func testAccountList(t *testing.T, s store.Store) {
	ctx := t.Context()
	if got, err := s.ListUsers(ctx, "", 10); err != nil || len(got) != 0 {
		t.Fatalf("ListUsers on an empty store = %v, %v", got, err)
	}
	var want []store.User
	for _, id := range []string{"u3", "u1", "u10", "u2", "u5"} {
		u := newUser(id, "name-"+id)
		mustCreateUser(t, s, u)
		want = append(want, u)
	}
	if err := s.DeleteUser(ctx, "u2", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUserDisabled(ctx, "u5", true); err != nil {
		t.Fatal(err)
	}
	order := []string{"u1", "u10", "u2", "u3", "u5"} // byte order of ids
	var got []store.User
	after := ""
	for page := 0; ; page++ {
		us, err := s.ListUsers(ctx, after, 2)
		if err != nil {
			t.Fatalf("ListUsers(%q, 2): %v", after, err)
		}
		if len(us) > 2 {
			t.Fatalf("ListUsers(%q, 2) returned %d users", after, len(us))
		}
		if len(us) == 0 {
			break
		}
		got = append(got, us...)
		after = us[len(us)-1].ID
		if page > 5 {
			t.Fatal("ListUsers does not end")
		}
	}
	if len(got) != len(order) {
		t.Fatalf("listed %d users, want %d", len(got), len(order))
	}
	for i, id := range order {
		if got[i].ID != id {
			t.Fatalf("user %d = %q, want %q (order %v)", i, got[i].ID, id, order)
		}
	}
	if !got[2].Deleted() || !got[4].Disabled || !got[0].Active() {
		t.Fatalf("states not listed: %+v", got)
	}
	for _, u := range want {
		if u.ID == "u1" {
			checkUser(t, "listed user", got[0], u)
		}
	}
	if _, err := s.ListUsers(ctx, "", 0); err == nil {
		t.Fatal("ListUsers with limit 0 succeeded")
	}
}
