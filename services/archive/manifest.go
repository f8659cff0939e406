package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/mqchat/mqchat/blob"
)

// ErrCorrupt is returned (wrapped, naming the object) when a segment or a
// manifest cannot be read back as written: a wrong checksum, broken gzip,
// a line that is not a message of the segment's chat and range.
var ErrCorrupt = errors.New("archive: corrupt")

// manifestVersion is bumped when the layout changes incompatibly.
const manifestVersion = 1

// Manifest lists a chat's archived segments in ascending seq order; their
// ranges never overlap.
type Manifest struct {
	Version  int       `json:"version"`
	Chat     string    `json:"chat"`
	Segments []Segment `json:"segments"`
}

// Segment describes one archived object.
type Segment struct {
	Key      string `json:"key"`
	FromSeq  uint64 `json:"from_seq"`
	ToSeq    uint64 `json:"to_seq"`
	FromTime string `json:"from_time"` // SentAt of the oldest message
	ToTime   string `json:"to_time"`   // SentAt of the newest message
	Count    int    `json:"count"`
	Bytes    int64  `json:"bytes"`  // of the gzip object
	SHA256   string `json:"sha256"` // of the gzip object, hex
}

// LastSeq is the highest archived seq, 0 when nothing is.
func (m Manifest) LastSeq() uint64 {
	if len(m.Segments) == 0 {
		return 0
	}
	return m.Segments[len(m.Segments)-1].ToSeq
}

func prefix(chat string) string      { return "archive/" + chat + "/" }
func manifestKey(chat string) string { return prefix(chat) + "manifest.json" }
func segmentKey(chat string, from, to uint64) string {
	return fmt.Sprintf("%s%d-%d.jsonl.gz", prefix(chat), from, to)
}

// maxManifest bounds what is read as a manifest: a segment entry is about
// 250 bytes, so this is far more than any chat needs.
const maxManifest = 64 << 20

// LoadManifest returns chat's manifest, empty when the chat has none.
func LoadManifest(ctx context.Context, bs blob.Store, chat string) (Manifest, error) {
	key := manifestKey(chat)
	// A chat id is one key segment: a slash would put one chat's archive
	// inside another's.
	if strings.Contains(chat, "/") || blob.ValidKey(key) != nil {
		return Manifest{}, fmt.Errorf("archive: %q is not a chat id", chat)
	}
	rc, _, err := bs.Get(ctx, key)
	if errors.Is(err, blob.ErrNotFound) {
		return Manifest{Version: manifestVersion, Chat: chat}, nil
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("archive: manifest %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxManifest+1))
	if err != nil {
		return Manifest{}, fmt.Errorf("archive: manifest %s: %w", key, err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil || len(data) > maxManifest {
		return Manifest{}, fmt.Errorf("%w: manifest %s: %v", ErrCorrupt, key, err)
	}
	if err := m.check(chat); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest %s: %v", ErrCorrupt, key, err)
	}
	return m, nil
}

func (m Manifest) check(chat string) error {
	if m.Version != manifestVersion {
		return fmt.Errorf("version %d, want %d", m.Version, manifestVersion)
	}
	if m.Chat != chat {
		return fmt.Errorf("chat %q, want %q", m.Chat, chat)
	}
	var last uint64
	for _, s := range m.Segments {
		if s.FromSeq <= last || s.ToSeq < s.FromSeq || s.Key != segmentKey(chat, s.FromSeq, s.ToSeq) {
			return fmt.Errorf("segment %q (%d-%d) out of order or misnamed", s.Key, s.FromSeq, s.ToSeq)
		}
		last = s.ToSeq
	}
	return nil
}

// store replaces the manifest with m. A blob Put replaces its object
// whole (the fs backend renames a synced temp file over it, S3 PUT is
// atomic), so a reader sees the old list or the new one, never a mix.
func (m Manifest) store(ctx context.Context, bs blob.Store) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	key := manifestKey(m.Chat)
	if err := bs.Put(ctx, key, bytes.NewReader(data), int64(len(data)), "application/json"); err != nil {
		return fmt.Errorf("archive: manifest %s: %w", key, err)
	}
	return nil
}
