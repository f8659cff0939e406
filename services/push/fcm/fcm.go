// Package fcm is the push provider that sends through Firebase Cloud
// Messaging's HTTP v1 API with the Firebase Admin SDK. iOS devices are
// reached through FCM too (APNs key uploaded in the Firebase console).
package fcm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	firebase "firebase.google.com/go/v4"
	"firebase.google.com/go/v4/messaging"
	"google.golang.org/api/option"

	"github.com/mqchat/mqchat/services/push"
)

// maxTokens is FCM's limit for one multicast.
const maxTokens = 500

// Options configures the provider.
type Options struct {
	// CredentialsFile is a service-account JSON key; its project_id picks
	// the project and its token_uri the OAuth2 token endpoint.
	CredentialsFile string
	// Endpoint replaces https://fcm.googleapis.com/v1 (emulators, tests).
	Endpoint string
}

// Provider sends notifications through FCM.
type Provider struct {
	client *messaging.Client
}

// New builds a provider; it reads the credentials but makes no request.
func New(ctx context.Context, opts Options) (*Provider, error) {
	if opts.CredentialsFile == "" {
		return nil, errors.New("fcm: credentials file is required")
	}
	copts := []option.ClientOption{option.WithCredentialsFile(opts.CredentialsFile)}
	if opts.Endpoint != "" {
		copts = append(copts, option.WithEndpoint(opts.Endpoint))
	}
	app, err := firebase.NewApp(ctx, nil, copts...)
	if err != nil {
		return nil, fmt.Errorf("fcm: %w", err)
	}
	client, err := app.Messaging(ctx)
	if err != nil {
		return nil, fmt.Errorf("fcm: messaging client: %w", err)
	}
	return &Provider{client: client}, nil
}

// Send sends n to every target with SendEachForMulticast, at most 500
// tokens a call, and reports each token's outcome.
func (p *Provider) Send(ctx context.Context, n push.Notification, targets []push.Target) []error {
	errs := make([]error, len(targets))
	for start := 0; start < len(targets); start += maxTokens {
		chunk := targets[start:min(start+maxTokens, len(targets))]
		msg := Message(n)
		msg.Tokens = make([]string, len(chunk))
		for i, t := range chunk {
			msg.Tokens[i] = t.Token
		}
		br, err := p.client.SendEachForMulticast(ctx, msg)
		for i := range chunk {
			switch {
			case err != nil:
				errs[start+i] = Classify(err)
			case i < len(br.Responses) && br.Responses[i] != nil && !br.Responses[i].Success:
				errs[start+i] = Classify(br.Responses[i].Error)
			case i >= len(br.Responses) || br.Responses[i] == nil:
				errs[start+i] = &push.SendError{Kind: push.Permanent, Reason: "other", Err: errors.New("fcm: no response for token")}
			}
		}
	}
	return errs
}

// Message renders n for FCM: the chat id is the collapse key on Android,
// the apns-collapse-id on iOS and the notification tag on the web, so a
// device shows one notification per chat, the newest.
func Message(n push.Notification) *messaging.MulticastMessage {
	return &messaging.MulticastMessage{
		Data:         n.Data(),
		Notification: &messaging.Notification{Title: n.Title, Body: n.Body},
		Android: &messaging.AndroidConfig{
			CollapseKey:  n.Chat,
			Priority:     "high",
			Notification: &messaging.AndroidNotification{Tag: n.Chat},
		},
		APNS: &messaging.APNSConfig{
			Headers: map[string]string{
				"apns-collapse-id": collapseID(n.Chat),
				"apns-push-type":   "alert",
				"apns-priority":    "10",
			},
			Payload: &messaging.APNSPayload{Aps: &messaging.Aps{ThreadID: n.Chat, Badge: badge(n.Unread)}},
		},
		Webpush: &messaging.WebpushConfig{
			Notification: &messaging.WebpushNotification{Tag: n.Chat, Renotify: true},
		},
	}
}

func badge(unread uint64) *int {
	b := int(min(unread, 9999))
	return &b
}

// collapseID fits APNs' 64-byte limit on apns-collapse-id.
func collapseID(chat string) string {
	if len(chat) <= 64 {
		return chat
	}
	return chat[:64]
}

// Classify maps an SDK error to the push pipeline's kinds: unregistered
// and invalid tokens are dead, FCM's unavailable, quota and internal
// errors and network failures are worth a retry, the rest is permanent
// (sender id mismatch, APNs credentials: configuration problems).
func Classify(err error) *push.SendError {
	se := func(k push.Kind, reason string) *push.SendError {
		return &push.SendError{Kind: k, Reason: reason, Err: err}
	}
	switch {
	case messaging.IsUnregistered(err):
		return se(push.DeadToken, "unregistered")
	case messaging.IsInvalidArgument(err) && strings.Contains(err.Error(), "registration token"):
		// INVALID_ARGUMENT also reports malformed messages; only a
		// refused token is a reason to forget the token.
		return se(push.DeadToken, "invalid_argument")
	case messaging.IsInvalidArgument(err):
		return se(push.Permanent, "invalid_argument")
	case messaging.IsUnavailable(err):
		return se(push.Transient, "unavailable")
	case messaging.IsQuotaExceeded(err):
		return se(push.Transient, "quota_exceeded")
	case messaging.IsInternal(err):
		return se(push.Transient, "internal")
	case messaging.IsSenderIDMismatch(err):
		return se(push.Permanent, "sender_id_mismatch")
	case messaging.IsThirdPartyAuthError(err):
		return se(push.Permanent, "third_party_auth")
	case errors.Is(err, context.DeadlineExceeded):
		return se(push.Transient, "timeout")
	case errors.Is(err, context.Canceled):
		return se(push.Permanent, "cancelled")
	}
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ne) || errors.As(err, &ue) {
		return se(push.Transient, "network")
	}
	return se(push.Permanent, "other")
}
