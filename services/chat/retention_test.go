package chat

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestHistoryPageAfterPurge: paging knows where retention cut a chat.
// Forward paging from 0 starts at the first stored seq, backward paging
// ends there (next is null on the page that reaches it), and every page
// reports first_seq. (The chat list side is in e2e TestRetentionGroup.)
func TestHistoryPageAfterPurge(t *testing.T) {
	f := newLifecycleFixture(t, Options{})
	to := `"user:` + f.b + `"`
	var seqs []uint64
	for range 6 {
		seqs = append(seqs, f.must(f.a, `{"to":`+to+`,"cmid":"$CMID","body":"x"}`).Message.Seq)
	}
	chatID := DirectChatID(f.a, f.b)
	n, first, err := f.st.PurgeMessages(context.Background(), chatID, time.Now().Add(time.Hour), 3)
	if err != nil || n != 3 || first != seqs[3] {
		t.Fatalf("PurgeMessages = %d, %d, %v; want 3, %d", n, first, err, seqs[3])
	}
	pageSeqs := func(p Page) []uint64 {
		var out []uint64
		for _, m := range p.Messages {
			out = append(out, m.Seq)
		}
		return out
	}
	cases := []struct {
		name     string
		q        PageQuery
		want     []uint64
		wantNext bool
	}{
		{"forward from 0 starts at first", PageQuery{Forward: true, Limit: 2}, seqs[3:5], true},
		{"forward from a purged seq", PageQuery{Forward: true, After: seqs[1], Limit: 10}, seqs[3:], false},
		{"backward ends at first", PageQuery{Before: seqs[5], Limit: 2}, seqs[3:5], false},
		{"backward page above first", PageQuery{Before: seqs[5] + 1, Limit: 2}, seqs[4:], true},
		{"below first is empty", PageQuery{Before: seqs[3], Limit: 5}, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := f.svc.HistoryPage(context.Background(), f.a, chatID, tc.q)
			if err != nil {
				t.Fatalf("HistoryPage: %v", err)
			}
			if got := pageSeqs(p); !slices.Equal(got, tc.want) || (p.Next != nil) != tc.wantNext || p.FirstSeq != seqs[3] {
				t.Fatalf("page seqs %v next %v first %d; want %v, next %v, first %d", got, p.Next, p.FirstSeq, tc.want, tc.wantNext, seqs[3])
			}
		})
	}

}
