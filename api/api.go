// Package api is chatd's REST interface (gin): accounts and tokens, history
// and send-over-HTTP, health, readiness and metrics.
package api

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/services/auth"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Accounts is what the API needs from the auth service.
type Accounts interface {
	Register(ctx context.Context, username, password string) (auth.Tokens, error)
	Login(ctx context.Context, username, password string) (auth.Tokens, error)
	Refresh(ctx context.Context, refreshToken string) (auth.Tokens, error)
	// Identify verifies an access token and names its user and session.
	Identify(ctx context.Context, accessToken string) (auth.Identity, error)
	User(ctx context.Context, uid string) (store.User, error)
}

// Chats is what the API needs from the chat service.
type Chats interface {
	Send(ctx context.Context, from string, env chat.Envelope) (chat.Result, error)
	HistoryPage(ctx context.Context, uid, chat string, q chat.PageQuery) (chat.Page, error)
	ChatList(ctx context.Context, uid string, q chat.ListQuery) (chat.ChatList, error)
	MarkRead(ctx context.Context, uid, chat string, seq uint64) (store.ChatState, error)
}

// Options wires the API.
type Options struct {
	Accounts Accounts
	Chats    Chats
	Groups   Groups
	Ready    func(ctx context.Context) error // nil error = ready
	// Discovery enables GET /v1/discovery.
	Discovery       Discovery
	Metrics         http.Handler
	Logger          *slog.Logger
	MaxMessageBytes int
	AuthLimiter     Limiter // per client IP on /v1/auth; nil = unlimited
	// Presence and Relations enable /v1/presence; both or neither.
	Presence  Presence
	Relations Relations
	// Devices enables /v1/devices (push tokens).
	Devices Devices
	// People enables /v1/users (lookup, profiles), PATCH /v1/me and the
	// profile in GET /v1/me.
	People People
	// Sessions enables logout, session lists and password change.
	Sessions Sessions
	// Lifecycle enables DELETE /v1/me and GET /v1/users/{user_id}.
	Lifecycle Lifecycle
	// Blocks enables /v1/blocks, Privacy /v1/me/privacy and ChatRequests
	// /v1/chats/{chat}/accept.
	Blocks       Blocks
	Privacy      Privacy
	ChatRequests ChatRequests
	// Invites enables /v1/invites (group invitations).
	Invites Invites
	// Keys enables the end-to-end encryption key directory:
	// /v1/devices/{device_id}/keys, /v1/users/{user_id}/devices and
	// /v1/users/{user_id}/keys.
	Keys KeyDirectory
	// DeviceMessages enables /v1/device-messages and
	// /v1/devices/{device_id}/messages (end-to-end encryption).
	DeviceMessages DeviceMessages
	// Origins decides which browser pages may call the API across
	// origins (CORS); nil sends no CORS headers, so browsers let only
	// same-origin pages read the answers.
	Origins OriginChecker
	// Web serves the web client under /app/ (paths relative to it).
	Web http.Handler
	// Retention enables GET and PUT /v1/chats/{chat}/retention.
	Retention Retention
	// Attachments enables /v1/attachments (uploads and downloads).
	Attachments Attachments
}

// Limiter rate-limits requests per key.
type Limiter interface {
	Allow(key string) bool
}

// New returns the HTTP handler.
func New(opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	a := &api{opts: opts}
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// The client IP is the TCP peer: trusting X-Forwarded-For from anyone
	// would let a client pick its own rate-limit key.
	_ = r.SetTrustedProxies(nil)
	r.Use(a.cors, a.logRequests, gin.CustomRecovery(func(c *gin.Context, v any) {
		fail(c, fmt.Errorf("panic in handler: %v", v))
	}), a.limitBody)
	r.NoRoute(func(c *gin.Context) {
		fail(c, &chat.Error{Code: chat.CodeNotFound, Message: "no such endpoint"})
	})
	r.NoMethod(noMethod)

	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", a.ready)
	if opts.Metrics != nil {
		r.GET("/metrics", gin.WrapH(opts.Metrics))
	}

	a.routeWeb(r)
	v1 := r.Group("/v1")
	v1.GET("/openapi.yaml", func(c *gin.Context) { c.Data(http.StatusOK, "application/yaml", openAPI) })
	a.routeDiscovery(v1)
	authRoutes := v1.Group("/auth", a.limitAuth, a.labelSession)
	authRoutes.POST("/register", a.register)
	authRoutes.POST("/login", a.login)
	authRoutes.POST("/refresh", a.refresh)

	authed := v1.Group("", a.authenticate)
	authed.GET("/me", a.me)
	authed.GET("/chats", a.chatList)
	authed.GET("/chats/:chat/messages", a.history)
	authed.POST("/chats/:chat/messages", a.send)
	authed.POST("/chats/:chat/read", a.markRead)
	a.routeMessages(authed)
	a.routeGroups(authed)
	a.routePresence(authed)
	a.routeDevices(authed)
	a.routePeople(authed)
	a.routeSessions(authed)
	a.routeLifecycle(authed)
	a.routeConsent(authed)
	a.routeInvites(authed)
	a.routeKeys(authed)
	a.routeDeviceMessages(authed)
	a.routeRetention(authed)
	a.routeAttachments(authed)
	return r
}

// openAPI describes every route below; a test keeps the two in step.
//
//go:embed openapi.yaml
var openAPI []byte

type api struct{ opts Options }

func (a *api) logRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	level := slog.LevelDebug
	if c.Writer.Status() >= 500 {
		level = slog.LevelError
	}
	attrs := []any{"method", c.Request.Method, "path", c.Request.URL.Path, "status", c.Writer.Status(),
		"duration", time.Since(start), "remote", c.ClientIP()}
	if err := c.Errors.Last(); err != nil {
		attrs = append(attrs, "error", err.Err) // the cause of an internal error (fail)
	}
	a.opts.Logger.Log(c.Request.Context(), level, "http request", attrs...)
}

// limitBody caps request bodies: nothing chatd accepts is larger than a
// message plus its envelope, but for an upload (its own limit).
func (a *api) limitBody(c *gin.Context) {
	limit := int64(a.opts.MaxMessageBytes) + 16<<10
	if a.isUpload(c) {
		limit = a.opts.Attachments.MaxBytes() + multipartSlack
	}
	if c.Request.Body != nil {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
	}
	c.Next()
}

func (a *api) limitAuth(c *gin.Context) {
	if a.opts.AuthLimiter != nil && !a.opts.AuthLimiter.Allow(c.ClientIP()) {
		fail(c, &chat.Error{Code: chat.CodeRateLimited, Message: "too many requests, retry later", RetryAfter: time.Second})
		return
	}
	c.Next()
}

func (a *api) ready(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if a.opts.Ready != nil {
		if err := a.opts.Ready(ctx); err != nil {
			a.opts.Logger.Warn("not ready", "error", err)
			fail(c, &chat.Error{Code: chat.CodeUnavailable, Message: "not ready: " + err.Error()})
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

// bindJSON decodes a JSON body, refusing unknown fields and oversize bodies
// with a clear 4xx.
func bindJSON(c *gin.Context, v any) bool {
	if err := decodeJSON(c.Request.Body, v); err != nil {
		fail(c, err)
		return false
	}
	return true
}

const userKey = "mqchat.uid"

func (a *api) authenticate(c *gin.Context) {
	h := c.GetHeader("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		fail(c, &chat.Error{Code: chat.CodeUnauthenticated, Field: "Authorization", Message: "missing bearer token"})
		return
	}
	id, err := a.opts.Accounts.Identify(c.Request.Context(), token)
	if err != nil {
		fail(c, err)
		return
	}
	c.Set(userKey, id.UserID)
	c.Set(sessionKey, id.SessionID)
	c.Next()
}
