package chat

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/mqchat/mqchat/store"
)

// replay answers a send whose (sender, cmid) already names a stored
// message. A true retry (same recipient, type, body and reply_to) gets the
// stored message's identity back, as if it had just been stored. A
// different request under the same cmid is refused: acknowledging it would
// tell the client that content it never delivered was sent. The stored
// message is read only here, on the rare duplicate path, so first sends pay
// nothing for the check.
func (w *writer) replay(ctx context.Context, m store.Message, ref store.MessageRef) reply {
	if ref.Chat != m.Chat {
		return reply{err: cmidReused(m.CMID)}
	}
	// The newest message below ref.Seq+1 is the one at ref.Seq (After 0
	// would mean "no lower bound", not "from seq 1").
	page, err := w.s.st.History(ctx, ref.Chat, store.HistoryQuery{Before: ref.Seq + 1, Limit: 1})
	if err != nil {
		return reply{err: w.s.storeError(ctx, "read replayed message", err)}
	}
	switch {
	case len(page) == 1 && page[0].Seq == ref.Seq:
		if !sameRequest(page[0], m) {
			return reply{err: cmidReused(m.CMID)}
		}
	default:
		// The message is written with its dedupe record in one atomic
		// write, so this is a broken store; the retry is answered as
		// before rather than refused for want of proof.
		w.s.opts.Logger.Error("dedupe record without its message", "chat", ref.Chat, "seq", ref.Seq)
	}
	res, err := duplicateOf(m, ref)
	return reply{res: res, err: err}
}

// sameRequest reports whether a retry asks for what stored holds. Bodies
// are compared as compact JSON: a client re-encoding the same value with
// other whitespace is still retrying.
//
// A deleted message, and an edit of one, no longer has its body: the
// retry is compared on everything else.
func sameRequest(stored, retry store.Message) bool {
	if (stored.Change == nil) != (retry.Change == nil) ||
		stored.Change != nil && *stored.Change != *retry.Change {
		return false
	}
	purged := !stored.DeletedAt.IsZero() || stored.Change != nil && len(stored.Body) == 0
	return stored.Type == retry.Type && stored.ReplyTo == retry.ReplyTo &&
		(purged || bytes.Equal(compactJSON(stored.Body), compactJSON(retry.Body)))
}

func compactJSON(b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}

func cmidReused(cmid string) error {
	return newError(CodeCMIDReused, "cmid (Idempotency-Key) "+cmid+" already names a different message; send new content with a new one", nil)
}
