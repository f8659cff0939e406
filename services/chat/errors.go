package chat

import (
	"errors"
	"time"
)

// Code classifies why a send or a read was refused. Transports map it to
// their own vocabulary (MQTT reason codes, HTTP statuses).
type Code string

const (
	CodeInvalid          Code = "invalid_payload"
	CodeTooLarge         Code = "payload_too_large"
	CodeUnknownRecipient Code = "unknown_recipient"
	CodeNotAuthorized    Code = "not_authorized"
	CodeNotFound         Code = "not_found"
	CodeQuota            Code = "quota_exceeded"
	CodeConflict         Code = "conflict"
	CodeUnavailable      Code = "unavailable"
	CodeInternal         Code = "internal"
	// CodeRateLimited: the caller is going faster than its rate limit
	// allows; the error's RetryAfter says when one more request fits.
	CodeRateLimited Code = "rate_limited"
	// CodeCMIDReused: a cmid (REST: Idempotency-Key) that already names
	// a stored message came with a different request. Answering with the
	// first message would tell the client its new content was sent.
	CodeCMIDReused Code = "cmid_reused"
	// CodeUnauthenticated: no valid credentials (a missing, bad or
	// expired token, a wrong password at login). Over MQTT it is a CONNACK
	// refusal, never an error event.
	CodeUnauthenticated Code = "unauthenticated"
)

// Codes lists every code, in the order docs/protocol.md lists them; the
// transports' mappings are tested against it.
var Codes = []Code{
	CodeInvalid, CodeUnauthenticated, CodeNotAuthorized, CodeNotFound, CodeConflict,
	CodeTooLarge, CodeRateLimited, CodeQuota, CodeUnknownRecipient, CodeCMIDReused,
	CodeUnavailable, CodeInternal,
}

// Error is a refusal with a code and a message meant for the client.
type Error struct {
	Code    Code
	Message string
	// Field names the request field at fault (a JSON key, query or path
	// parameter, or header), dotted for nested keys; "" when no one field is.
	Field string
	Err   error // cause, for logs; never shown to clients
	// RetryAfter is how long a rate-limited caller should wait before
	// retrying; 0 when the refusal says nothing about time.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return string(e.Code) + ": " + e.Message + ": " + e.Err.Error()
	}
	return string(e.Code) + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

func newError(code Code, msg string, cause error) *Error {
	return &Error{Code: code, Message: msg, Err: cause}
}

// Invalid is an invalid_payload refusal blaming field.
func Invalid(field, msg string) *Error {
	return &Error{Code: CodeInvalid, Field: field, Message: msg}
}

// CodeOf returns the code of err, CodeInternal for errors that are not *Error.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// MessageOf returns the client-facing message of err.
func MessageOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// FieldOf returns the field err blames, "" when none.
func FieldOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}
