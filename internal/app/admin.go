package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mqchat/mqchat/internal/config"
	"github.com/mqchat/mqchat/services/auth"
	"github.com/mqchat/mqchat/store"
)

// The admin socket lets `chatd user ...` work while the server runs: the
// embedded store is locked by the server process, so the CLI asks the server
// through a unix socket in the data dir. Access to it is access to the data
// dir, which an operator has anyway.
const adminSocketName = "admin.sock"

// Operator is what the operator's CLI does with accounts.
type Operator interface {
	CreateUser(ctx context.Context, username, password string) (store.User, error)
	IssueTokens(ctx context.Context, username string, accessTTL time.Duration) (auth.Tokens, error)
	LifecycleOperator
}

type adminServer struct {
	path string
	ops  Operator
	log  *slog.Logger
	srv  *http.Server
	// backup is set by the App once its store is open.
	backup backupFunc
}

type adminUserReq struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type adminTokenReq struct {
	Username string        `json:"username"`
	TTL      time.Duration `json:"ttl"`
}

type adminError struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

func newAdminServer(path string, ops Operator, log *slog.Logger) *adminServer {
	a := &adminServer{path: path, ops: ops, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /users", a.createUser)
	mux.HandleFunc("POST /tokens", a.issueTokens)
	a.routeLifecycle(mux)
	a.routeBackup(mux)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return a
}

func (a *adminServer) start() error {
	// We hold the store's lock, so a socket file left here belongs to a
	// process that died: replace it.
	if err := os.Remove(a.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("app: remove stale admin socket: %w", err)
	}
	ln, err := net.Listen("unix", a.path)
	if err != nil {
		return fmt.Errorf("app: admin socket: %w", err)
	}
	if err := os.Chmod(a.path, 0o600); err != nil {
		_ = ln.Close()
		return fmt.Errorf("app: admin socket permissions: %w", err)
	}
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("admin socket stopped", "error", err)
		}
	}()
	return nil
}

func (a *adminServer) stop(ctx context.Context) {
	if err := a.srv.Shutdown(ctx); err != nil {
		a.log.Warn("admin socket shutdown", "error", err)
	}
	_ = os.Remove(a.path)
}

func (a *adminServer) createUser(w http.ResponseWriter, r *http.Request) {
	var in adminUserReq
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeAdmin(w, http.StatusBadRequest, adminError{"input", err.Error()})
		return
	}
	u, err := a.ops.CreateUser(r.Context(), in.Username, in.Password)
	if err != nil {
		writeAdminErr(w, err)
		return
	}
	writeAdmin(w, http.StatusOK, store.User{ID: u.ID, Username: u.Username, CreatedAt: u.CreatedAt})
}

func (a *adminServer) issueTokens(w http.ResponseWriter, r *http.Request) {
	var in adminTokenReq
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeAdmin(w, http.StatusBadRequest, adminError{"input", err.Error()})
		return
	}
	t, err := a.ops.IssueTokens(r.Context(), in.Username, in.TTL)
	if err != nil {
		writeAdminErr(w, err)
		return
	}
	writeAdmin(w, http.StatusOK, t)
}

func writeAdmin(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeAdminErr(w http.ResponseWriter, err error) {
	var in *auth.InputError
	switch {
	case errors.As(err, &in):
		writeAdmin(w, http.StatusBadRequest, adminError{"input:" + in.Field, in.Reason})
	case errors.Is(err, auth.ErrUsernameTaken):
		writeAdmin(w, http.StatusConflict, adminError{"taken", err.Error()})
	case errors.Is(err, auth.ErrUnknownUser):
		writeAdmin(w, http.StatusNotFound, adminError{"unknown", err.Error()})
	case errors.Is(err, errInput):
		writeAdmin(w, http.StatusBadRequest, adminError{"input", err.Error()})
	default:
		writeAdmin(w, http.StatusInternalServerError, adminError{"internal", err.Error()})
	}
}

// socketOperator talks to a running server.
type socketOperator struct{ client *http.Client }

func (s socketOperator) call(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://chatd"+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e adminError
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			return fmt.Errorf("admin socket: status %d", resp.StatusCode)
		}
		switch {
		case resp.StatusCode == http.StatusConflict:
			return auth.ErrUsernameTaken
		case resp.StatusCode == http.StatusNotFound:
			return auth.ErrUnknownUser
		case len(e.Kind) > 6 && e.Kind[:6] == "input:":
			return &auth.InputError{Field: e.Kind[6:], Reason: e.Message}
		}
		return fmt.Errorf("admin socket: %s", e.Message)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (s socketOperator) CreateUser(ctx context.Context, username, password string) (store.User, error) {
	var u store.User
	err := s.call(ctx, "/users", adminUserReq{username, password}, &u)
	return u, err
}

func (s socketOperator) IssueTokens(ctx context.Context, username string, ttl time.Duration) (auth.Tokens, error) {
	var t auth.Tokens
	err := s.call(ctx, "/tokens", adminTokenReq{username, ttl}, &t)
	return t, err
}

// OperatorOptions says what OpenOperator may do when no server answers.
type OperatorOptions struct {
	// Create lets it make the data dir when there is none. Without it a
	// missing data dir is an error: the command was most likely run with
	// another working directory or config than the server's, and a new data
	// dir would hold accounts (and a JWT secret) the server never sees.
	Create bool
	// Notice receives the one line saying that the data dir is opened
	// directly because no server answers (nil: not said).
	Notice io.Writer
}

// OpenOperator returns an Operator for the node configured by cfg: the
// running server through its admin socket when one answers, otherwise the
// data dir opened directly, held for the CLI until the returned close
// function is called (which must be).
func OpenOperator(cfg config.Config, log *slog.Logger, opts OperatorOptions) (Operator, func() error, error) {
	dir := absDir(cfg.DataDir)
	path := filepath.Join(dir, adminSocketName)
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		_ = conn.Close()
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		}}
		return socketOperator{client}, func() error { client.CloseIdleConnections(); return nil }, nil
	}
	if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ECONNREFUSED) {
		return nil, nil, fmt.Errorf("app: admin socket %s: %w", path, err)
	}
	var msg string
	switch _, err := os.Stat(dir); {
	case !needsDataDir(cfg):
		// Accounts and the secret live elsewhere (PostgreSQL, auth.jwt_secret):
		// the data dir is not used, so there is nothing to refuse.
		msg = fmt.Sprintf("no running server at %s; opening the configured store directly", dir)
	case err == nil:
		msg = fmt.Sprintf("no running server at %s; opening %s directly", dir, dir)
	case !errors.Is(err, os.ErrNotExist):
		return nil, nil, fmt.Errorf("app: data dir: %w", err)
	case !opts.Create:
		return nil, nil, fmt.Errorf("no running server at %s and no data dir there: give the server's --data_dir or --config (the default ./data is relative to the working directory), or add --create to make a new data dir", dir)
	default:
		msg = fmt.Sprintf("no running server at %s; creating %s (--create)", dir, dir)
	}
	var lock *dirLock
	if needsDataDir(cfg) {
		if err := os.MkdirAll(dir, privateDirMode); err != nil {
			return nil, nil, fmt.Errorf("app: data dir: %w", err)
		}
		// A server that has the dir but no answering socket (starting,
		// stopping, or its socket deleted) must not share it with us.
		if lock, err = lockDataDir(dir); err != nil {
			return nil, nil, err
		}
	}
	if opts.Notice != nil {
		fmt.Fprintln(opts.Notice, msg)
	}
	fail := func(err error) (Operator, func() error, error) {
		return nil, nil, errors.Join(err, lock.release())
	}
	secret, err := jwtSecret(cfg)
	if err != nil {
		return fail(err)
	}
	st, err := openStore(cfg, log)
	if err != nil {
		return fail(err)
	}
	svc, err := auth.New(st, auth.Options{Secret: secret, AccessTTL: cfg.Auth.AccessTTL, RefreshTTL: cfg.Auth.RefreshTTL, BcryptCost: cfg.Auth.BcryptCost})
	if err != nil {
		return fail(errors.Join(err, st.Close()))
	}
	return offlineOperator{svc, st}, func() error { return errors.Join(st.Close(), lock.release()) }, nil
}

// needsDataDir reports whether the CLI working offline reads or writes the
// data dir: the embedded store, or the generated JWT secret.
func needsDataDir(cfg config.Config) bool {
	return cfg.Store.Relational == "pebble" || cfg.Store.Messages == "pebble" || cfg.Auth.JWTSecret == ""
}
