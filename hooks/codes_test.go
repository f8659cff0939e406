package hooks

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/mqchat/mqchat/services/chat"
)

// TestReasonCodesDocumented holds reasonCode to the MQTT column of the
// error table in docs/protocol.md, for every code.
func TestReasonCodesDocumented(t *testing.T) {
	md, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(md), "\n## Errors\n")
	if !ok {
		t.Fatal("docs/protocol.md has no Errors section")
	}
	section, _, _ = strings.Cut(section, "\n### ")
	// | `code` | HTTP | MQTT 5 reason | meaning |
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| [^|]+ \\| ([^|]+) \\|")
	documented := map[chat.Code]string{}
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		documented[chat.Code(m[1])] = m[2]
	}
	for _, code := range chat.Codes {
		col, ok := documented[code]
		if !ok {
			t.Errorf("%s is not in the table", code)
			continue
		}
		if code == chat.CodeUnauthenticated {
			continue // a CONNACK refusal, never an error event
		}
		if want := fmt.Sprintf("`0x%02x`", reasonCode(code).Code); !strings.HasPrefix(col, want) {
			t.Errorf("%s: documented %q, error events carry %s", code, col, want)
		}
	}
}
