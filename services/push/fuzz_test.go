package push

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mqchat/mqchat/store"
)

// FuzzBodyText covers the message bodies (client input) that become push
// notification text with push.include_body: only a non-empty JSON string
// gives text, and the text is valid UTF-8 of at most maxBodyRunes
// characters: the string itself, or its start and an ellipsis.
func FuzzBodyText(f *testing.F) {
	for _, s := range []string{
		`"hello"`, `""`, `null`, `{"text":"x"}`, `"` + strings.Repeat("é", maxBodyRunes+1) + `"`,
		`"` + strings.Repeat("x", maxBodyRunes) + `"`, "\"\xff\xfe\"", `"\ud800"`, `"a\u0000b"`, `  "padded"  `, `"a" "b"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		text, ok := bodyText(store.Message{Body: body})
		var s string
		isString := json.Unmarshal(body, &s) == nil && s != ""
		if ok != isString {
			t.Fatalf("bodyText(%q) = %q, %v", body, text, ok)
		}
		if !ok {
			if text != "" {
				t.Fatalf("bodyText(%q) refused but returned %q", body, text)
			}
			return
		}
		n := utf8.RuneCountInString(text)
		if !utf8.ValidString(text) || n > maxBodyRunes || n == 0 {
			t.Fatalf("bodyText(%q) = %q (%d characters)", body, text, n)
		}
		if text != s && (!strings.HasSuffix(text, "…") || !strings.HasPrefix(s, strings.TrimSuffix(text, "…")) || n != maxBodyRunes) {
			t.Fatalf("bodyText(%q) = %q, not the text nor its start", body, text)
		}
	})
}
