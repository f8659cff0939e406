package api

import (
	"strings"
	"testing"

	"github.com/mqchat/mqchat/store/pebble"
)

func openStore(t *testing.T) *pebble.Store {
	t.Helper()
	st, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatalf("pebble.Open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// TestDecodeRetention: the body's shape is checked before the service is
// asked.
func TestDecodeRetention(t *testing.T) {
	cases := []struct {
		body    string
		wantErr bool
		seconds int64
	}{
		{`{"seconds": 3600}`, false, 3600},
		{`{"seconds": 0}`, false, 0},
		{`{}`, true, 0},
		{`{"seconds": -1}`, true, 0},
		{`{"seconds": 1.5}`, true, 0},
		{`{"seconds": 99999999999999999}`, true, 0},
		{`{"seconds": 60, "other": 1}`, true, 0},
	}
	for _, tc := range cases {
		p, err := decodeRetention(strings.NewReader(tc.body))
		if (err != nil) != tc.wantErr || (err == nil && int64(p.Seconds()) != tc.seconds) {
			t.Errorf("decodeRetention(%s) = %v, %v; want %ds, error %v", tc.body, p, err, tc.seconds, tc.wantErr)
		}
	}
}
