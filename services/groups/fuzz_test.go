package groups

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
)

// FuzzCleanName covers the group names clients send (POST and PATCH
// /v1/groups, create and rename on users/{me}/groups): a refusal is
// invalid_payload with a message, an accepted name is trimmed UTF-8 text
// of 1 to 100 characters without control characters, and cleaning it again
// changes nothing.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{
		"trip", "  spaced  ", "", " ", "\t\n", "é" + strings.Repeat("x", maxName-1), strings.Repeat("é", maxName+1),
		"a\x00b", "a\u0085b", "a\u200bb", "\xff", "\u3000trip\u3000", "🚀 launch", "a\nb",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := cleanName(name)
		if err != nil {
			var e *chat.Error
			if !errors.As(err, &e) || e.Code != chat.CodeInvalid || e.Message == "" {
				t.Fatalf("cleanName(%q): error %#v, want invalid_payload with a message", name, err)
			}
			return
		}
		n := utf8.RuneCountInString(got)
		if got != strings.TrimSpace(name) || n < 1 || n > maxName || !utf8.ValidString(got) ||
			strings.IndexFunc(got, unicode.IsControl) >= 0 {
			t.Fatalf("cleanName(%q) = %q", name, got)
		}
		if again, err := cleanName(got); err != nil || again != got {
			t.Fatalf("cleanName(%q) = %q, %v; not idempotent", got, again, err)
		}
	})
}

// FuzzDeriveID covers the group ids derived from a client's op_id: always
// shaped like every other id, and the same for a retry.
func FuzzDeriveID(f *testing.F) {
	f.Add("aaaaaaaaaaaaaaaaaaaa", "op-1")
	f.Add("", "")
	f.Add("a\x00b", "\xff")
	f.Fuzz(func(t *testing.T, actor, opID string) {
		id := DeriveID(actor, opID)
		if !ids.ValidUserID(id) || DeriveID(actor, opID) != id {
			t.Fatalf("DeriveID(%q, %q) = %q", actor, opID, id)
		}
	})
}
