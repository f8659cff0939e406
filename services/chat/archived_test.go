package chat

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	blobfs "github.com/mqchat/mqchat/blob/fs"
	"github.com/mqchat/mqchat/services/archive"
	"github.com/mqchat/mqchat/store"
)

// History below the live range comes from the archive: seqs 1-10 are
// archived (in two segments) and gone from the store, 11-20 are live.
// Every page reads as if the chat were whole.
func TestHistoryBelowTheLiveRange(t *testing.T) {
	ctx := context.Background()
	bs, err := blobfs.Open(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, Options{Archive: archive.NewReader(bs)})
	a, b, c := f.user(), f.user(), f.user()
	chat := DirectChatID(a, b)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var msgs []store.Message
	for seq := uint64(1); seq <= 20; seq++ {
		msgs = append(msgs, store.Message{
			Chat: chat, Seq: seq, ID: 1<<40 | seq, From: a, CMID: fmt.Sprint("m", seq), Type: "text",
			Body: fmt.Appendf(nil, `"m%d"`, seq), SentAt: base.Add(time.Duration(seq) * time.Minute),
		})
	}
	w := archive.NewWriter(bs)
	w.MaxSegment = 6
	if err := w.Archive(ctx, chat, msgs[:6]); err != nil {
		t.Fatal(err)
	}
	if err := w.Archive(ctx, chat, msgs[6:10]); err != nil {
		t.Fatal(err)
	}
	if m, err := archive.LoadManifest(ctx, bs, chat); err != nil || len(m.Segments) != 2 {
		t.Fatalf("manifest = %+v, %v, want two segments", m, err)
	}
	if err := f.st.AppendMessages(ctx, msgs[10:]); err != nil {
		t.Fatal(err)
	}

	span := func(from, to uint64) []uint64 {
		var s []uint64
		for i := from; i <= to; i++ {
			s = append(s, i)
		}
		return s
	}
	tests := []struct {
		name string
		q    store.HistoryQuery
		want []uint64
	}{
		{"newest page, all live", store.HistoryQuery{Limit: 5}, span(16, 20)},
		{"newest page reaching into the archive", store.HistoryQuery{Limit: 15}, span(6, 20)},
		{"before, straddling", store.HistoryQuery{Before: 13, Limit: 5}, span(8, 12)},
		{"before, wholly archived, across segments", store.HistoryQuery{Before: 9, Limit: 4}, span(5, 8)},
		{"oldest page", store.HistoryQuery{Before: 4, Limit: 10}, span(1, 3)},
		{"whole chat", store.HistoryQuery{Limit: 200}, span(1, 20)},
		{"after, wholly archived", store.HistoryQuery{After: 2, Limit: 3}, span(3, 5)},
		{"after, straddling", store.HistoryQuery{After: 8, Limit: 5}, span(9, 13)},
		{"after, all live", store.HistoryQuery{After: 12, Limit: 3}, span(13, 15)},
		{"after the end", store.HistoryQuery{After: 20, Limit: 3}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			page, err := f.svc.History(ctx, b, chat, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, m := range page {
				got = append(got, m.Seq)
				if string(m.Body) != fmt.Sprintf(`"m%d"`, m.Seq) {
					t.Errorf("seq %d body %s", m.Seq, m.Body)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("History(%+v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
	// Membership is checked before the archive is read.
	if _, err := f.svc.History(ctx, c, chat, store.HistoryQuery{Before: 5, Limit: 5}); CodeOf(err) != CodeNotAuthorized {
		t.Fatalf("a non-member's history: %v, want not_authorized", err)
	}
	// The REST/MQTT page: paging back from the newest reaches seq 1 with
	// a next cursor all the way.
	var seen []uint64
	q := PageQuery{Limit: 7}
	for {
		p, err := f.svc.HistoryPage(ctx, a, chat, q)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, m := range p.Messages {
			seqs = append(seqs, m.Seq)
		}
		seen = append(seqs, seen...)
		if p.Next == nil {
			break
		}
		q.Before = *p.Next
	}
	if !slices.Equal(seen, span(1, 20)) {
		t.Fatalf("paging back saw %v, want 1..20", seen)
	}
}
