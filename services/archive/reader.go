package archive

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/mqchat/mqchat/blob"
	"github.com/mqchat/mqchat/store"
)

// Reader serves archived messages.
type Reader struct {
	blobs blob.Store
}

// NewReader returns a Reader of the archives in bs.
func NewReader(bs blob.Store) *Reader { return &Reader{blobs: bs} }

// Before returns the newest archived messages of chat with seq < before
// (before 0 = no bound), at most limit, in ascending seq order: the history
// page below a chat's live range. Only the segments that hold the page are
// read, newest first.
func (r *Reader) Before(ctx context.Context, chat string, before uint64, limit int) ([]store.Message, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("archive: limit %d must be > 0", limit)
	}
	man, err := LoadManifest(ctx, r.blobs, chat)
	if err != nil {
		return nil, err
	}
	var page []store.Message // newest segment's slice first, reversed at the end
	for i := len(man.Segments) - 1; i >= 0 && len(page) < limit; i-- {
		seg := man.Segments[i]
		if before != 0 && seg.FromSeq >= before {
			continue
		}
		msgs, err := r.Segment(ctx, chat, seg)
		if err != nil {
			return nil, err
		}
		for j := len(msgs) - 1; j >= 0 && len(page) < limit; j-- {
			if before == 0 || msgs[j].Seq < before {
				page = append(page, msgs[j])
			}
		}
	}
	for i, j := 0, len(page)-1; i < j; i, j = i+1, j-1 {
		page[i], page[j] = page[j], page[i]
	}
	return page, nil
}

// Segment reads one segment of chat's manifest whole and checks it against
// the manifest: checksum, size, and that it holds exactly the messages of
// its range, in order. Anything else is ErrCorrupt naming the object.
func (r *Reader) Segment(ctx context.Context, chat string, seg Segment) ([]store.Message, error) {
	rc, _, err := r.blobs.Get(ctx, seg.Key)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, fmt.Errorf("%w: segment %s is listed in the manifest but missing: %w", ErrCorrupt, seg.Key, err)
	}
	if err != nil {
		return nil, fmt.Errorf("archive: segment %s: %w", seg.Key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, seg.Bytes+1))
	if err != nil {
		return nil, fmt.Errorf("archive: segment %s: %w", seg.Key, err)
	}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: segment %s: %s", ErrCorrupt, seg.Key, fmt.Sprintf(format, args...))
	}
	if int64(len(data)) != seg.Bytes {
		return nil, corrupt("%d bytes or more, the manifest says %d", len(data), seg.Bytes)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != seg.SHA256 {
		return nil, corrupt("sha256 %x, the manifest says %s", sum, seg.SHA256)
	}
	msgs, err := decodeSegment(data)
	if err != nil {
		return nil, corrupt("%v", err)
	}
	if len(msgs) != seg.Count {
		return nil, corrupt("%d messages, the manifest says %d", len(msgs), seg.Count)
	}
	prev := uint64(0)
	for _, m := range msgs {
		if m.Chat != chat || m.Seq < seg.FromSeq || m.Seq > seg.ToSeq || m.Seq <= prev {
			return nil, corrupt("message %q seq %d does not belong at this place of %q %d-%d", m.Chat, m.Seq, chat, seg.FromSeq, seg.ToSeq)
		}
		prev = m.Seq
	}
	return msgs, nil
}

func decodeSegment(data []byte) ([]store.Message, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	dec := json.NewDecoder(zr)
	var msgs []store.Message
	for n := 1; ; n++ {
		var rec record
		err := dec.Decode(&rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", n, err)
		}
		m, err := rec.message()
		if err != nil {
			return nil, fmt.Errorf("message %d (seq %d): %w", n, rec.Seq, err)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// After returns the oldest archived messages of chat with seq > after, at
// most limit, in ascending seq order: a forward history page that starts
// below a chat's live range.
func (r *Reader) After(ctx context.Context, chat string, after uint64, limit int) ([]store.Message, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("archive: limit %d must be > 0", limit)
	}
	man, err := LoadManifest(ctx, r.blobs, chat)
	if err != nil {
		return nil, err
	}
	var page []store.Message
	for _, seg := range man.Segments {
		if len(page) >= limit {
			break
		}
		if seg.ToSeq <= after {
			continue
		}
		msgs, err := r.Segment(ctx, chat, seg)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Seq > after && len(page) < limit {
				page = append(page, m)
			}
		}
	}
	return page, nil
}
