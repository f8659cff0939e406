package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/mqchat/mqchat/services/accounts"
	"github.com/mqchat/mqchat/services/auth"
	"github.com/mqchat/mqchat/store"
)

// LifecycleOperator is the operator's part of the account lifecycle:
// `chatd user list|disable|enable|delete`. Accounts are named by username
// or user id.
type LifecycleOperator interface {
	ListUsers(ctx context.Context, after string, limit int) ([]accounts.Status, error)
	SetDisabled(ctx context.Context, who string, disabled bool) (accounts.Status, error)
	DeleteUser(ctx context.Context, who string) (accounts.Status, error)
}

// errInput is a malformed operator request.
var errInput = errors.New("invalid request")

// maxListPage bounds one `user list` page over the socket.
const maxListPage = 1000

// nodeOperator is the running node's Operator: the auth service for
// accounts and tokens, the lifecycle service for the rest.
type nodeOperator struct {
	*auth.Service
	acc *accounts.Service
}

func (o nodeOperator) ListUsers(ctx context.Context, after string, limit int) ([]accounts.Status, error) {
	return o.acc.List(ctx, after, limit)
}

func (o nodeOperator) SetDisabled(ctx context.Context, who string, disabled bool) (accounts.Status, error) {
	return o.acc.SetDisabled(ctx, who, disabled)
}

func (o nodeOperator) DeleteUser(ctx context.Context, who string) (accounts.Status, error) {
	return o.acc.Delete(ctx, who)
}

// offlineOperator works on a data dir with no server running. Listing and
// disabling need only the store (no connection can be open); deletion
// hands groups over and announces it to their members, which takes the
// running server.
type offlineOperator struct {
	*auth.Service
	st store.Store
}

func (o offlineOperator) lifecycle() *accounts.Service {
	return accounts.New(accounts.Options{Store: o.st, Sessions: noSessions{}})
}

func (o offlineOperator) ListUsers(ctx context.Context, after string, limit int) ([]accounts.Status, error) {
	return o.lifecycle().List(ctx, after, limit)
}

func (o offlineOperator) SetDisabled(ctx context.Context, who string, disabled bool) (accounts.Status, error) {
	return o.lifecycle().SetDisabled(ctx, who, disabled)
}

func (o offlineOperator) DeleteUser(context.Context, string) (accounts.Status, error) {
	return accounts.Status{}, errors.New("deleting an account needs the running server (it hands the account's groups over and tells their members); start chatd and run this again")
}

// noSessions: with the server stopped there is no connection to close.
type noSessions struct{}

func (noSessions) EndSessions(string) {}

type adminListReq struct {
	After string `json:"after"`
	Limit int    `json:"limit"`
}

type adminWhoReq struct {
	User string `json:"user"`
}

func (a *adminServer) routeLifecycle(mux *http.ServeMux) {
	mux.HandleFunc("POST /users/list", func(w http.ResponseWriter, r *http.Request) {
		var in adminListReq
		if !decodeAdmin(w, r, &in) {
			return
		}
		if in.Limit <= 0 || in.Limit > maxListPage {
			writeAdminErr(w, errInput)
			return
		}
		us, err := a.ops.ListUsers(r.Context(), in.After, in.Limit)
		answerAdmin(w, us, err)
	})
	for path, op := range map[string]func(ctx context.Context, who string) (accounts.Status, error){
		"POST /users/disable": func(ctx context.Context, who string) (accounts.Status, error) {
			return a.ops.SetDisabled(ctx, who, true)
		},
		"POST /users/enable": func(ctx context.Context, who string) (accounts.Status, error) {
			return a.ops.SetDisabled(ctx, who, false)
		},
		"POST /users/delete": a.ops.DeleteUser,
	} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			var in adminWhoReq
			if !decodeAdmin(w, r, &in) {
				return
			}
			st, err := op(r.Context(), in.User)
			answerAdmin(w, st, err)
		})
	}
}

func decodeAdmin(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		writeAdmin(w, http.StatusBadRequest, adminError{"input", err.Error()})
		return false
	}
	return true
}

func answerAdmin(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeAdminErr(w, err)
		return
	}
	writeAdmin(w, http.StatusOK, v)
}

func (s socketOperator) ListUsers(ctx context.Context, after string, limit int) ([]accounts.Status, error) {
	var out []accounts.Status
	err := s.call(ctx, "/users/list", adminListReq{after, limit}, &out)
	return out, err
}

func (s socketOperator) SetDisabled(ctx context.Context, who string, disabled bool) (accounts.Status, error) {
	path := "/users/enable"
	if disabled {
		path = "/users/disable"
	}
	var out accounts.Status
	err := s.call(ctx, path, adminWhoReq{who}, &out)
	return out, err
}

func (s socketOperator) DeleteUser(ctx context.Context, who string) (accounts.Status, error) {
	var out accounts.Status
	err := s.call(ctx, "/users/delete", adminWhoReq{who}, &out)
	return out, err
}
