package cassandra

import (
	"reflect"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/mqchat/mqchat/store"
)

// The statements of one Cassandra batch share a timestamp, so planChanges
// must leave exactly one net value per cell. These cases hold batches
// whose targets are all in the batch (no read, no cluster needed) to the
// INSERT arguments they produce; the conformance suite covers the rest
// against a cluster (CASSANDRA_HOSTS).
func TestPlanFoldsBatchIntoInserts(t *testing.T) {
	at := time.UnixMilli(1_780_000_000_000).UTC()
	msg := func(seq uint64, from string, c *store.Change, body string) store.Message {
		return store.Message{Chat: "g:x", Seq: seq, ID: seq, From: from, CMID: "c", Type: "text",
			Body: []byte(body), SentAt: at.Add(time.Duration(seq) * time.Second), Change: c}
	}
	change := func(k store.ChangeKind, target uint64, emoji string) *store.Change {
		return &store.Change{Kind: k, Target: target, Emoji: emoji}
	}
	// Argument positions of insertChanged.
	const body, edited, deleted, edits, reactions = 7, 13, 14, 15, 16
	unset := gocql.UnsetValue
	tests := []struct {
		name string
		msgs []store.Message
		// want[seq] = the expected values at the positions above
		want map[uint64][5]any
	}{
		{
			name: "react, unreact, react again",
			msgs: []store.Message{
				msg(1, "ann", nil, `"hi"`),
				msg(2, "bob", change(store.ChangeReact, 1, "👍"), ""),
				msg(3, "bob", change(store.ChangeUnreact, 1, "👍"), ""),
				msg(4, "amy", change(store.ChangeReact, 1, "👍"), ""),
				msg(5, "bob", change(store.ChangeReact, 1, "❤"), ""),
			},
			want: map[uint64][5]any{1: {[]byte(`"hi"`), unset, unset, unset, []string{"❤\x00bob", "👍\x00amy"}}},
		},
		{
			name: "edit then delete purges both bodies and the reactions",
			msgs: []store.Message{
				msg(1, "ann", nil, `"secret"`),
				msg(2, "bob", change(store.ChangeReact, 1, "👍"), ""),
				msg(3, "ann", change(store.ChangeEdit, 1, ""), `"secret2"`),
				msg(4, "ann", change(store.ChangeDelete, 1, ""), ""),
				msg(5, "ann", change(store.ChangeEdit, 1, ""), `"late"`),
			},
			want: map[uint64][5]any{
				1: {[]byte{}, unset, at.Add(4 * time.Second), []int64{3}, unset},
				3: {[]byte{}, unset, unset, unset, unset},
				5: {[]byte{}, unset, unset, unset, unset},
			},
		},
		{
			name: "two edits: the last body and time",
			msgs: []store.Message{
				msg(1, "ann", nil, `"a"`),
				msg(2, "ann", change(store.ChangeEdit, 1, ""), `"b"`),
				msg(3, "ann", change(store.ChangeEdit, 1, ""), `"c"`),
			},
			want: map[uint64][5]any{1: {[]byte(`"c"`), at.Add(3 * time.Second), unset, []int64{2, 3}, unset}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := (&Store{}).planChanges(t.Context(), tc.msgs)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.order) != 0 {
				t.Fatalf("stored rows touched: %v", p.order)
			}
			for seq, want := range tc.want {
				cql, args := p.insert(&tc.msgs[seq-1], 0)
				if cql != insertChanged {
					t.Fatalf("seq %d: statement %q", seq, cql)
				}
				got := [5]any{args[body], args[edited], args[deleted], args[edits], args[reactions]}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("seq %d: body, edited, deleted, edits, reactions = %q, want %q", seq, got, want)
				}
			}
		})
	}
}

// A stored row is brought to its net state by UPDATEs: one for its
// scalars, and one per direction of reaction change (a column takes one
// operation per statement), none after a delete.
func TestStoredRowUpdates(t *testing.T) {
	at := time.UnixMilli(1_780_000_000_000).UTC()
	ref := msgRef{"g:x", 4097}
	where := []any{"g:x", int64(1), int64(4097)}
	tests := []struct {
		name string
		row  rowState
		want []stmt
	}{
		{"reactions both ways", rowState{reactions: map[string]bool{"👍\x00bob": true, "❤\x00amy": false}}, []stmt{
			{1, `UPDATE messages SET reactions = reactions + ? WHERE chat_id = ? AND bucket = ? AND seq = ?`, append([]any{[]string{"👍\x00bob"}}, where...)},
			{1, `UPDATE messages SET reactions = reactions - ? WHERE chat_id = ? AND bucket = ? AND seq = ?`, append([]any{[]string{"❤\x00amy"}}, where...)},
		}},
		{"edit", rowState{setBody: true, body: []byte(`"b"`), setEdited: true, editedAt: at, newEdits: []uint64{4100}}, []stmt{
			{1, `UPDATE messages SET body = ?, edited_at = ?, edits = edits + ? WHERE chat_id = ? AND bucket = ? AND seq = ?`,
				append([]any{[]byte(`"b"`), at, []int64{4100}}, where...)},
		}},
		{"delete", rowState{deleted: true, setBody: true, setEdited: true, setDeleted: true, deletedAt: at,
			clearReactions: true, newEdits: []uint64{4100}}, []stmt{
			{1, `UPDATE messages SET body = ?, edited_at = ?, deleted_at = ?, reactions = ? WHERE chat_id = ? AND bucket = ? AND seq = ?`,
				append([]any{[]byte{}, nil, at, nil}, where...)},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.row.updates(ref); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("updates =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}
