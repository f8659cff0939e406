package chat

import (
	"context"
	"sync"
	"testing"

	"github.com/mqchat/mqchat/internal/ids"
	pebblestore "github.com/mqchat/mqchat/store/pebble"
)

type readMove struct {
	uid, chat string
	seq       uint64
}

type recReceipts struct {
	mu    sync.Mutex
	moves []readMove
}

func (r *recReceipts) Read(uid, chat string, seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.moves = append(r.moves, readMove{uid, chat, seq})
}

func (r *recReceipts) all() []readMove {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]readMove(nil), r.moves...)
}

// TestMarkReadHandsMovesToReceipts: the store write is done when MarkRead
// returns, and only a cursor that moved is handed on, once.
func TestMarkReadHandsMovesToReceipts(t *testing.T) {
	rec := &recReceipts{}
	ps, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gen, err := ids.NewGenerator(1)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, st: &faultStore{Store: ps}, dlv: &recorder{}}
	f.svc = New(f.st, f.dlv, gen, Options{List: ps, Receipts: rec})
	f.dlv.idle = f.svc.fanoutIdle
	t.Cleanup(f.close)
	a, b := f.user(), f.user()
	for _, cmid := range []string{"m1", "m2", "m3", "m4", "m5"} {
		f.send(a, b, cmid)
	}
	chatID := DirectChatID(a, b)
	ctx := context.Background()
	st, err := f.svc.MarkRead(ctx, b, chatID, 3)
	if err != nil || st.ReadSeq != 3 {
		t.Fatalf("MarkRead: %+v %v", st, err)
	}
	if got, err := f.st.ChatState(ctx, b, chatID); err != nil || got.ReadSeq != 3 {
		t.Fatalf("stored state %+v %v", got, err)
	}
	if st, err = f.svc.MarkRead(ctx, b, chatID, 2); err != nil || st.ReadSeq != 3 {
		t.Fatalf("backwards MarkRead: %+v %v", st, err)
	}
	if st, err = f.svc.MarkRead(ctx, b, chatID, 99); err != nil || st.ReadSeq != 5 {
		t.Fatalf("MarkRead past the end: %+v %v", st, err)
	}
	want := []readMove{{b, chatID, 3}, {b, chatID, 5}}
	if got := rec.all(); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("receipts %+v, want %+v", got, want)
	}
}
