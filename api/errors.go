package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/services/auth"
	"github.com/mqchat/mqchat/services/chat"
)

// errorBody is the one error shape every endpoint uses; MQTT error events
// carry the same code, message and field.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// statusOf is the HTTP status of each error code (docs/protocol.md lists
// the same table with the MQTT reason codes). A code missing here is
// answered as internal, so a new code cannot leak out unmapped.
var statusOf = map[chat.Code]int{
	chat.CodeInvalid:          http.StatusBadRequest,
	chat.CodeUnauthenticated:  http.StatusUnauthorized,
	chat.CodeNotAuthorized:    http.StatusForbidden,
	chat.CodeNotFound:         http.StatusNotFound,
	chat.CodeConflict:         http.StatusConflict,
	chat.CodeTooLarge:         http.StatusRequestEntityTooLarge,
	chat.CodeRateLimited:      http.StatusTooManyRequests,
	chat.CodeQuota:            http.StatusTooManyRequests,
	chat.CodeUnknownRecipient: http.StatusNotFound,
	chat.CodeCMIDReused:       http.StatusConflict,
	chat.CodeUnavailable:      http.StatusServiceUnavailable,
	chat.CodeInternal:         http.StatusInternalServerError,
}

// fail answers a refused request. It is the only place that turns an
// error into an HTTP answer: every code, status and header of a refusal
// comes from here.
func fail(c *gin.Context, err error) {
	e := refusal(err)
	status, ok := statusOf[e.Code]
	if !ok || e.Code == chat.CodeInternal {
		// The cause goes to the log (logRequests), never to the client.
		_ = c.Error(err)
		e = &chat.Error{Code: chat.CodeInternal, Message: "internal error"}
		status = http.StatusInternalServerError
	}
	if e.Code == chat.CodeUnauthenticated {
		c.Header("WWW-Authenticate", challenge(err))
	}
	if e.RetryAfter > 0 {
		// Whole seconds, rounded up: retrying early would only be refused again.
		c.Header("Retry-After", strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10))
	}
	writeError(c, status, e)
}

// refusal is err in the API's vocabulary: the chat service's errors as
// they are, the auth service's and the HTTP layer's translated.
func refusal(err error) *chat.Error {
	var (
		ce        *chat.Error
		in        *auth.InputError
		throttled *auth.ThrottledError
		tooBig    *http.MaxBytesError
	)
	switch {
	case errors.As(err, &ce):
		return ce
	case errors.As(err, &in):
		return &chat.Error{Code: chat.CodeInvalid, Field: in.Field, Message: in.Error()}
	case errors.Is(err, auth.ErrUsernameTaken):
		return &chat.Error{Code: chat.CodeConflict, Field: "username", Message: "username is taken"}
	case errors.As(err, &throttled):
		return &chat.Error{Code: chat.CodeRateLimited, Message: "too many failed attempts for this account, retry later", RetryAfter: throttled.RetryAfter}
	case errors.Is(err, auth.ErrInvalidCredentials):
		return &chat.Error{Code: chat.CodeUnauthenticated, Message: "invalid username or password"}
	case errors.Is(err, auth.ErrTokenExpired):
		return &chat.Error{Code: chat.CodeUnauthenticated, Message: "token expired, refresh it"}
	case errors.Is(err, auth.ErrInvalidToken), errors.Is(err, auth.ErrUnknownUser):
		return &chat.Error{Code: chat.CodeUnauthenticated, Message: "invalid token"}
	case errors.Is(err, auth.ErrSessionNotFound):
		return &chat.Error{Code: chat.CodeNotFound, Field: "session_id", Message: "no such session"}
	case errors.Is(err, auth.ErrWrongPassword):
		// 403, not 401: the token is fine, the confirmation is not.
		return &chat.Error{Code: chat.CodeNotAuthorized, Field: "old_password", Message: "the old password is wrong"}
	case errors.As(err, &tooBig):
		return &chat.Error{Code: chat.CodeTooLarge, Message: "request body is too large"}
	default:
		return &chat.Error{Code: chat.CodeInternal, Message: "internal error", Err: err}
	}
}

// challenge is the WWW-Authenticate header of a 401 (RFC 6750 §3): a
// presented token that failed says invalid_token, and an expired one says
// so, which is how a client tells "refresh" from "log in again" without
// a code of its own.
func challenge(err error) string {
	switch {
	case errors.Is(err, auth.ErrTokenExpired):
		return `Bearer realm="mqchat", error="invalid_token", error_description="token expired"`
	case errors.Is(err, auth.ErrInvalidToken), errors.Is(err, auth.ErrUnknownUser):
		return `Bearer realm="mqchat", error="invalid_token"`
	}
	return `Bearer realm="mqchat"`
}

// noMethod answers a known path asked with a method it does not serve:
// 405 as HTTP requires, with the not_found code, since the endpoint the
// client meant does not exist.
func noMethod(c *gin.Context) {
	writeError(c, http.StatusMethodNotAllowed, &chat.Error{Code: chat.CodeNotFound, Message: "method not allowed on this endpoint"})
}

func writeError(c *gin.Context, status int, e *chat.Error) {
	c.AbortWithStatusJSON(status, errorBody{errorDetail{Code: string(e.Code), Message: e.Message, Field: e.Field}})
}
