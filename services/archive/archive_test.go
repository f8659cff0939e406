package archive_test

// Every test runs on the real filesystem blob store and real Pebble stores.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mqchat/mqchat/blob"
	blobfs "github.com/mqchat/mqchat/blob/fs"
	"github.com/mqchat/mqchat/services/archive"
	"github.com/mqchat/mqchat/store"
	"github.com/mqchat/mqchat/store/pebble"
)

const chat = "g:archivetestgroup000"

// base is old enough that no message has a live dedupe record, as for
// messages a retention purge hands over.
var base = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newBlobs(t *testing.T) blob.Store {
	t.Helper()
	bs, err := blobfs.Open(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatalf("blob fs: %v", err)
	}
	return bs
}

func newStore(t *testing.T) *pebble.Store {
	t.Helper()
	s, err := pebble.Open(filepath.Join(t.TempDir(), "store"), pebble.Options{})
	if err != nil {
		t.Fatalf("pebble: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func plain(seq uint64, from, body string) store.Message {
	return store.Message{
		Chat: chat, Seq: seq, ID: 1<<40 | seq, From: from, CMID: fmt.Sprintf("c-%d", seq), Type: "text",
		Body: []byte(body), SentAt: base.Add(time.Duration(seq) * time.Minute),
	}
}

func change(seq uint64, from string, kind store.ChangeKind, target uint64, emoji, body string) store.Message {
	m := plain(seq, from, body)
	m.Type = string(kind)
	if body == "" {
		m.Body = nil
	}
	m.Change = &store.Change{Kind: kind, Target: target, Emoji: emoji}
	return m
}

// conversation is n messages of every kind the store holds: bodies with
// characters encoding/json would escape, replies, edits, a delete, reactions.
func conversation(n int) []store.Message {
	var msgs []store.Message
	for seq := uint64(1); seq <= uint64(n); seq++ {
		switch {
		case seq%10 == 4:
			msgs = append(msgs, change(seq, "bob", store.ChangeEdit, seq-1, "", fmt.Sprintf(`{"text":"edited %d"}`, seq-1)))
		case seq%10 == 6:
			msgs = append(msgs, change(seq, "alice", store.ChangeDelete, seq-1, "", ""))
		case seq%10 == 8:
			msgs = append(msgs, change(seq, "bob", store.ChangeReact, seq-1, "👍", ""))
		default:
			m := plain(seq, "alice", fmt.Sprintf(`{"text":"<b>%d</b> & \u00e9"}`, seq))
			if seq%3 == 0 {
				m.ReplyTo = seq - 1
			}
			msgs = append(msgs, m)
		}
	}
	return msgs
}

func fill(t *testing.T, s store.Messages, msgs []store.Message) {
	t.Helper()
	if err := s.AppendMessages(context.Background(), msgs); err != nil {
		t.Fatalf("AppendMessages: %v", err)
	}
}

func history(t *testing.T, s store.Messages) []store.Message {
	t.Helper()
	page, err := s.History(context.Background(), chat, store.HistoryQuery{After: 0, Limit: 10000})
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	return page
}

func manifest(t *testing.T, bs blob.Store) archive.Manifest {
	t.Helper()
	m, err := archive.LoadManifest(context.Background(), bs, chat)
	if err != nil {
		t.Fatalf("LoadManifest: %v", err)
	}
	return m
}

// The messages History shows come back from an export and an import into
// an empty store exactly as they were: body bytes, ids, times, changes and
// their resolved state.
func TestExportImportRoundTrip(t *testing.T) {
	ctx := context.Background()
	src, dst, bs := newStore(t), newStore(t), newBlobs(t)
	fill(t, src, conversation(45))
	want := history(t, src)

	// Pages of 20: the export reads the chat from its start, page by page.
	w := archive.NewWriter(bs)
	w.MaxSegment = 20
	res, err := archive.Export(ctx, src, w, chat, base.Add(24*time.Hour))
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	if res != (archive.ExportResult{Messages: 45, Segments: 3, LastSeq: 45}) {
		t.Fatalf("Export = %+v, want 45 messages in 3 segments up to seq 45", res)
	}
	imp, err := archive.Import(ctx, archive.NewReader(bs), dst, chat)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if imp != (archive.ImportResult{Segments: 3, Imported: 45}) {
		t.Fatalf("Import = %+v", imp)
	}
	if got := history(t, dst); !reflect.DeepEqual(got, want) {
		t.Fatalf("history after the round trip differs\n got %+v\nwant %+v", got, want)
	}
	// The archive itself holds the history view: what Before reads equals
	// what the store showed.
	got, err := archive.NewReader(bs).Before(ctx, chat, 0, 100)
	if err != nil {
		t.Fatalf("Before: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("archived messages differ from the history\n got %+v\nwant %+v", got, want)
	}
}

// An export stops at --until and a second one continues where the archive
// ends; the manifest lists both segments with their ranges.
func TestExportUntilAndManifest(t *testing.T) {
	ctx := context.Background()
	src, bs := newStore(t), newBlobs(t)
	msgs := conversation(30)
	fill(t, src, msgs)
	w := archive.NewWriter(bs)
	w.MaxSegment = 18

	// Messages 1-12 are sent before base+12m30s.
	res, err := archive.Export(ctx, src, w, chat, base.Add(12*time.Minute+30*time.Second))
	if err != nil || res.Messages != 12 || res.LastSeq != 12 {
		t.Fatalf("Export until seq 12 = %+v, %v", res, err)
	}
	// 13-30 do not fit beside 1-12 in one segment of 18.
	res, err = archive.Export(ctx, src, w, chat, base.Add(time.Hour))
	if err != nil || res != (archive.ExportResult{Messages: 18, Segments: 2, LastSeq: 30}) {
		t.Fatalf("second Export = %+v, %v", res, err)
	}
	// Nothing new: nothing written.
	before := manifest(t, bs)
	if res, err := archive.Export(ctx, src, w, chat, base.Add(time.Hour)); err != nil || res.Messages != 0 {
		t.Fatalf("third Export = %+v, %v", res, err)
	}
	m := manifest(t, bs)
	if !reflect.DeepEqual(m, before) {
		t.Fatalf("an export with nothing new changed the manifest:\n%+v\n%+v", before, m)
	}
	if m.Version != 1 || m.Chat != chat || len(m.Segments) != 2 {
		t.Fatalf("manifest = %+v, want version 1, the chat, 2 segments", m)
	}
	wantSegs := []struct {
		key              string
		from, to         uint64
		fromTime, toTime string
		count            int
	}{
		{"archive/" + chat + "/1-12.jsonl.gz", 1, 12, "2025-03-01T12:01:00.000Z", "2025-03-01T12:12:00.000Z", 12},
		{"archive/" + chat + "/13-30.jsonl.gz", 13, 30, "2025-03-01T12:13:00.000Z", "2025-03-01T12:30:00.000Z", 18},
	}
	for i, w := range wantSegs {
		s := m.Segments[i]
		if s.Key != w.key || s.FromSeq != w.from || s.ToSeq != w.to || s.FromTime != w.fromTime || s.ToTime != w.toTime || s.Count != w.count {
			t.Errorf("segment %d = %+v, want %+v", i, s, w)
		}
		info, err := bs.Stat(ctx, s.Key)
		if err != nil || info.Size != s.Bytes || len(s.SHA256) != 64 {
			t.Errorf("segment %s: stat %+v, %v; manifest says %d bytes, sha256 %q", s.Key, info, err, s.Bytes, s.SHA256)
		}
	}
	// The manifest is plain JSON an operator can read.
	rc, _, err := bs.Get(ctx, "archive/"+chat+"/manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var raw map[string]any
	if err := json.NewDecoder(rc).Decode(&raw); err != nil || raw["chat"] != chat {
		t.Fatalf("manifest.json = %v, %v", raw, err)
	}
}

// The purger may hand the same messages twice (a crash between archiving
// and purging); a seq the archive already holds is not written again, and
// one below the archive's end that it lacks is refused rather than
// overlapping.
func TestArchiveRepeatedPass(t *testing.T) {
	ctx := context.Background()
	bs := newBlobs(t)
	w := archive.NewWriter(bs)
	msgs := conversation(20)
	if err := w.Archive(ctx, chat, msgs[:10]); err != nil {
		t.Fatal(err)
	}
	if err := w.Archive(ctx, chat, msgs[:15]); err != nil {
		t.Fatal(err)
	}
	m := manifest(t, bs)
	if len(m.Segments) != 1 || m.Segments[0].FromSeq != 1 || m.Segments[0].ToSeq != 15 || m.Segments[0].Count != 15 {
		t.Fatalf("manifest after an overlapping pass = %+v, want one segment 1-15", m.Segments)
	}
	other := msgs[15]
	other.Chat = "g:someoneelsesgroup00"
	if err := w.Archive(ctx, chat, []store.Message{other}); err == nil {
		t.Fatal("Archive took a message of another chat")
	}
}

// History below the live range: pages that fall in one segment, span two,
// or reach the start of the chat.
func TestBeforeAcrossSegments(t *testing.T) {
	ctx := context.Background()
	bs := newBlobs(t)
	w := archive.NewWriter(bs)
	w.MaxSegment = 10
	msgs := conversation(30)
	for _, r := range [][2]int{{0, 10}, {10, 20}, {20, 30}} {
		if err := w.Archive(ctx, chat, msgs[r[0]:r[1]]); err != nil {
			t.Fatal(err)
		}
	}
	r := archive.NewReader(bs)
	tests := []struct {
		name        string
		before      uint64
		limit       int
		first, last uint64
	}{
		{"inside one segment", 19, 5, 14, 18},
		{"spanning two segments", 15, 10, 5, 14},
		{"spanning three", 26, 20, 6, 25},
		{"reaching the start", 4, 10, 1, 3},
		{"above the archive", 100, 3, 28, 30},
		{"no bound", 0, 2, 29, 30},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.Before(ctx, chat, tc.before, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			want := msgs[tc.first-1 : tc.last]
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Before(%d, %d) = seqs %v, want %d..%d", tc.before, tc.limit, seqs(got), tc.first, tc.last)
			}
		})
	}
	forward := []struct {
		name        string
		after       uint64
		limit       int
		first, last uint64
	}{
		{"forward inside one segment", 11, 5, 12, 16},
		{"forward spanning two", 7, 10, 8, 17},
		{"forward from the start", 0, 3, 1, 3},
		{"forward to the end", 27, 10, 28, 30},
	}
	for _, tc := range forward {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.After(ctx, chat, tc.after, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if want := msgs[tc.first-1 : tc.last]; !reflect.DeepEqual(got, want) {
				t.Fatalf("After(%d, %d) = seqs %v, want %d..%d", tc.after, tc.limit, seqs(got), tc.first, tc.last)
			}
		})
	}
	if got, err := r.After(ctx, chat, 30, 10); err != nil || len(got) != 0 {
		t.Fatalf("After(30) = %v, %v, want nothing", seqs(got), err)
	}
	if got, err := r.Before(ctx, chat, 1, 10); err != nil || len(got) != 0 {
		t.Fatalf("Before(1) = %v, %v, want nothing", seqs(got), err)
	}
	if got, err := r.Before(ctx, "g:neverarchived000000", 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("Before on a chat without archive = %v, %v, want nothing", seqs(got), err)
	}
}

func seqs(msgs []store.Message) []uint64 {
	var s []uint64
	for _, m := range msgs {
		s = append(s, m.Seq)
	}
	return s
}

// Importing twice, or into a store that already holds part of the range,
// stores each message once; a different message at an archived seq is an
// error that names it.
func TestImportIdempotent(t *testing.T) {
	ctx := context.Background()
	src, bs := newStore(t), newBlobs(t)
	msgs := conversation(25)
	fill(t, src, msgs)
	w := archive.NewWriter(bs)
	w.MaxSegment = 10
	page := history(t, src)
	if err := w.Archive(ctx, chat, page[:10]); err != nil {
		t.Fatal(err)
	}
	if err := w.Archive(ctx, chat, page[10:]); err != nil {
		t.Fatal(err)
	}
	r := archive.NewReader(bs)

	dst := newStore(t)
	fill(t, dst, msgs[:7]) // cut short half-way through the first segment
	res, err := archive.Import(ctx, r, dst, chat)
	if err != nil || res != (archive.ImportResult{Segments: 2, Imported: 18, Skipped: 7}) {
		t.Fatalf("Import over a partial store = %+v, %v", res, err)
	}
	res, err = archive.Import(ctx, r, dst, chat)
	if err != nil || res != (archive.ImportResult{Segments: 2, Imported: 0, Skipped: 25}) {
		t.Fatalf("second Import = %+v, %v", res, err)
	}
	if got := history(t, dst); !reflect.DeepEqual(got, page) {
		t.Fatalf("history after two imports differs\n got %v\nwant %v", seqs(got), seqs(page))
	}

	clash := newStore(t)
	m := plain(2, "mallory", `"not the archived one"`)
	m.ID = 99
	fill(t, clash, []store.Message{m})
	_, err = archive.Import(ctx, r, clash, chat)
	if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "seq 2") {
		t.Fatalf("Import over another message at seq 2: err = %v, want ErrConflict naming seq 2", err)
	}
}

// A damaged archive is reported as corrupt, naming the object, never read
// as if it were fine.
func TestCorruptArchive(t *testing.T) {
	ctx := context.Background()
	segKey := "archive/" + chat + "/1-10.jsonl.gz"
	manKey := "archive/" + chat + "/manifest.json"
	tests := []struct {
		name   string
		key    string
		damage func(data []byte) []byte
	}{
		{"flipped byte", segKey, func(d []byte) []byte { d[len(d)/2] ^= 0xff; return d }},
		{"truncated", segKey, func(d []byte) []byte { return d[:len(d)-8] }},
		{"not gzip", segKey, func(d []byte) []byte { return []byte("{\"seq\":1}\n") }},
		{"manifest not json", manKey, func(d []byte) []byte { return d[:len(d)/2] }},
		{"manifest of another chat", manKey, func(d []byte) []byte {
			return bytes.Replace(d, []byte(`"chat": "`+chat), []byte(`"chat": "g:otherchat0000000000"`), 1)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bs := newBlobs(t)
			if err := archive.NewWriter(bs).Archive(ctx, chat, conversation(10)); err != nil {
				t.Fatal(err)
			}
			rc, _, err := bs.Get(ctx, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			data = tc.damage(data)
			if err := bs.Put(ctx, tc.key, bytes.NewReader(data), int64(len(data)), "application/octet-stream"); err != nil {
				t.Fatal(err)
			}
			_, err = archive.NewReader(bs).Before(ctx, chat, 0, 10)
			if !errors.Is(err, archive.ErrCorrupt) || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("Before: err = %v, want ErrCorrupt naming %s", err, tc.key)
			}
			_, err = archive.Import(ctx, archive.NewReader(bs), newStore(t), chat)
			if !errors.Is(err, archive.ErrCorrupt) {
				t.Fatalf("Import: err = %v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("segment missing", func(t *testing.T) {
		bs := newBlobs(t)
		if err := archive.NewWriter(bs).Archive(ctx, chat, conversation(10)); err != nil {
			t.Fatal(err)
		}
		if err := bs.Delete(ctx, segKey); err != nil {
			t.Fatal(err)
		}
		if _, err := archive.NewReader(bs).Before(ctx, chat, 0, 10); !errors.Is(err, archive.ErrCorrupt) || !strings.Contains(err.Error(), "missing") {
			t.Fatalf("Before: err = %v, want ErrCorrupt saying the segment is missing", err)
		}
	})
}

// A purger handing over a message or two each pass fills segments up to
// MaxSegment instead of leaving one per pass, and the segments it merged
// away are deleted.
func TestSmallPassesCoalesce(t *testing.T) {
	ctx := context.Background()
	bs := newBlobs(t)
	w := archive.NewWriter(bs)
	w.MaxSegment = 10
	msgs := conversation(25)
	for i := 0; i < len(msgs); i += 2 {
		if err := w.Archive(ctx, chat, msgs[i:min(i+2, len(msgs))]); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	if err := bs.List(ctx, "archive/"+chat+"/", func(i blob.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	p := "archive/" + chat + "/"
	want := []string{p + "1-10.jsonl.gz", p + "11-20.jsonl.gz", p + "21-25.jsonl.gz", p + "manifest.json"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("objects = %v, want %v", keys, want)
	}
	got, err := archive.NewReader(bs).Before(ctx, chat, 0, 100)
	if err != nil || !reflect.DeepEqual(got, msgs) {
		t.Fatalf("Before = %v, %v, want 1..25", seqs(got), err)
	}
}

func TestChatIDCannotEscape(t *testing.T) {
	bs := newBlobs(t)
	for _, c := range []string{"", "a/b", "..", "g:x/../../y"} {
		if _, err := archive.LoadManifest(context.Background(), bs, c); err == nil {
			t.Errorf("LoadManifest(%q) accepted it", c)
		}
	}
}
