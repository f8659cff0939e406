package chat

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/store"
	pebblestore "github.com/mqchat/mqchat/store/pebble"
)

// readCounter is the real pebble store counting the reads a chat list may
// make per chat (the N+1 shape) and the batch reads that replace them.
type readCounter struct {
	*pebblestore.Store
	history, userByID, group        atomic.Int64
	lastMessages, usersByID, groups atomic.Int64
}

func (c *readCounter) History(ctx context.Context, chat string, q store.HistoryQuery) ([]store.Message, error) {
	c.history.Add(1)
	return c.Store.History(ctx, chat, q)
}

func (c *readCounter) UserByID(ctx context.Context, id string) (store.User, error) {
	c.userByID.Add(1)
	return c.Store.UserByID(ctx, id)
}

func (c *readCounter) Group(ctx context.Context, id string) (store.Group, error) {
	c.group.Add(1)
	return c.Store.Group(ctx, id)
}

func (c *readCounter) LastMessages(ctx context.Context, chats []string) (map[string]store.Message, error) {
	c.lastMessages.Add(1)
	return c.Store.LastMessages(ctx, chats)
}

func (c *readCounter) UsersByID(ctx context.Context, ids []string) (map[string]store.User, error) {
	c.usersByID.Add(1)
	return c.Store.UsersByID(ctx, ids)
}

func (c *readCounter) GroupsByID(ctx context.Context, ids []string) (map[string]store.Group, error) {
	c.groups.Add(1)
	return c.Store.GroupsByID(ctx, ids)
}

// TestChatListReadsPerScreen: a chat list costs the same three store reads
// for one chat or forty, and still gets every title, last message and
// unread count right.
func TestChatListReadsPerScreen(t *testing.T) {
	ps, err := pebblestore.Open(t.TempDir(), pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gen, err := ids.NewGenerator(1)
	if err != nil {
		t.Fatal(err)
	}
	rc := &readCounter{Store: ps}
	f := &fixture{t: t, st: &faultStore{Store: ps}, dlv: &recorder{}}
	svc := New(rc, f.dlv, gen, Options{List: rc, MaxMessageBytes: 1024})
	f.svc = svc
	f.dlv.idle = svc.fanoutIdle
	t.Cleanup(f.close)
	ctx := context.Background()

	me := f.user()
	const direct, groups = 30, 10
	others := make(map[string]string, direct) // chat -> the other user's name
	for i := range direct {
		other := f.user()
		f.send(other, me, fmt.Sprint("d", i))
		f.send(other, me, fmt.Sprint("d2-", i))
		u, err := ps.UserByID(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		others[DirectChatID(me, other)] = u.Username
	}
	now := time.Now()
	for i := range groups {
		gid := ids.NewUserID()
		g := store.Group{ID: gid, Name: fmt.Sprint("group ", i), CreatedBy: me, CreatedAt: now}
		if err := ps.CreateGroup(ctx, g, []store.Member{{GroupID: gid, UserID: me, Role: store.RoleOwner, JoinedAt: now}}); err != nil {
			t.Fatal(err)
		}
		if err := ps.JoinChat(ctx, me, GroupChatID(gid), now); err != nil {
			t.Fatal(err)
		}
		others[GroupChatID(gid)] = g.Name
	}
	f.dlv.settle()

	for _, c := range []*atomic.Int64{&rc.history, &rc.userByID, &rc.group, &rc.lastMessages, &rc.usersByID, &rc.groups} {
		c.Store(0)
	}
	list, err := svc.ChatList(ctx, me, ListQuery{Limit: 200})
	if err != nil {
		t.Fatalf("ChatList: %v", err)
	}
	if len(list.Chats) != direct+groups {
		t.Fatalf("ChatList has %d chats, want %d", len(list.Chats), direct+groups)
	}
	for _, c := range list.Chats {
		if c.Title != others[c.Chat] {
			t.Fatalf("chat %s title %q, want %q", c.Chat, c.Title, others[c.Chat])
		}
		if c.Kind == "direct" && (c.LastSeq != 2 || c.Unread != 2 || c.LastMessage == nil || c.LastMessage.Seq != 2) {
			t.Fatalf("direct chat summary %+v", c)
		}
		if c.Kind == "group" && (c.LastSeq != 0 || c.LastMessage != nil) {
			t.Fatalf("empty group summary %+v", c)
		}
	}
	per := map[string]int64{
		"History": rc.history.Load(), "UserByID": rc.userByID.Load(), "Group": rc.group.Load(),
	}
	for name, n := range per {
		if n != 0 {
			t.Errorf("ChatList called %s %d times: one store read per chat", name, n)
		}
	}
	batch := map[string]int64{
		"LastMessages": rc.lastMessages.Load(), "UsersByID": rc.usersByID.Load(), "GroupsByID": rc.groups.Load(),
	}
	for name, n := range batch {
		if n != 1 {
			t.Errorf("ChatList called %s %d times, want once", name, n)
		}
	}
}
