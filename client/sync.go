package client

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
)

// The store, not the MQTT session, is what the client trusts: a live
// message that skips a seq, or a reconnect, makes it page the chat's
// history from the last seq it handed out. Each chat's messages go to the
// application once and in seq order, whichever way they came.

// chatState is where one chat stands for the application.
type chatState struct {
	hw      uint64             // every seq up to hw has been handed out (or was before Dial)
	pending map[uint64]Message // live messages past a gap, held until it is filled
}

type syncState struct {
	baselined bool
	early     []Message // live messages that arrived before the baseline
	chats     map[string]*chatState
	needFill  map[string]bool
	needFull  bool   // a reconnect: ask which chats changed
	cursor    string // the last chat list's sync_cursor
}

func newSyncState() syncState {
	return syncState{chats: map[string]*chatState{}, needFill: map[string]bool{}}
}

// Seen returns, per chat, the last seq handed to the application (or
// before Dial, the chat's last seq then): what to pass as Options.Since
// when the application starts again with the messages it kept.
func (c *Client) Seen() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.sync.chats))
	for ch, st := range c.sync.chats {
		out[ch] = st.hw
	}
	return out
}

// accept takes one message, live or from history, and hands out whatever
// is now in order. It also completes the send waiting for its own copy.
func (c *Client) accept(m Message, fromHistory bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.CMID != "" && m.From == c.uid {
		if ch, ok := c.waiters["cmid:"+m.CMID]; ok {
			mm := m
			select {
			case ch <- reply{typ: "message", msg: &mm}:
			default:
			}
		}
	}
	ss := &c.sync
	if !ss.baselined {
		ss.early = append(ss.early, m)
		return
	}
	st := ss.chats[m.Chat]
	if st == nil {
		// A chat that began after Dial (a first message to us, a new
		// group): all of it is new.
		st = &chatState{}
		ss.chats[m.Chat] = st
	}
	if m.Seq <= st.hw {
		return
	}
	if m.Seq > st.hw+1 {
		if !fromHistory {
			if st.pending == nil {
				st.pending = map[uint64]Message{}
			}
			st.pending[m.Seq] = m
			ss.needFill[m.Chat] = true
			c.poke()
			return
		}
		// History pages are the truth: a seq they skip is hidden from
		// this user (a blocked sender's message) and never comes.
		st.hw = m.Seq - 1
	}
	c.hand(st, m)
}

// hand gives m (the next seq) to the application, then whatever pending
// messages follow it.
func (c *Client) hand(st *chatState, m Message) {
	c.msgs.push(m)
	st.hw = m.Seq
	delete(st.pending, m.Seq)
	for {
		next, ok := st.pending[st.hw+1]
		if !ok {
			break
		}
		delete(st.pending, next.Seq)
		c.msgs.push(next)
		st.hw = next.Seq
	}
	for seq := range st.pending {
		if seq <= st.hw {
			delete(st.pending, seq)
		}
	}
}

func (c *Client) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

type chatSummary struct {
	Chat    string `json:"chat"`
	LastSeq uint64 `json:"last_seq"`
	Left    bool   `json:"left"`
}

// chatList reads every page of the chat list, changed since cursor when it
// is set.
func (c *Client) chatList(ctx context.Context, cursor string) ([]chatSummary, string, error) {
	var all []chatSummary
	after := ""
	for {
		req := map[string]any{"request_id": "s" + randomID(8), "limit": 200}
		if cursor != "" {
			req["changed_since"] = cursor
		}
		if after != "" {
			req["after"] = after
		}
		payload, _ := json.Marshal(req)
		r, err := c.request(ctx, "req:"+req["request_id"].(string), "sync", payload)
		if err != nil {
			return nil, "", err
		}
		var page struct {
			Chats      []chatSummary `json:"chats"`
			Next       string        `json:"next"`
			SyncCursor string        `json:"sync_cursor"`
		}
		if err := json.Unmarshal(r.raw, &page); err != nil {
			return nil, "", err
		}
		all = append(all, page.Chats...)
		if page.Next == "" {
			return all, page.SyncCursor, nil
		}
		after = page.Next
	}
}

// baseline fixes where each chat starts: Options.Since, else its last seq
// now. Live messages that came in while the list was read are new to the
// application whatever the list says, so a chat starts before the first
// of them.
func (c *Client) baseline(ctx context.Context) error {
	list, cursor, err := c.chatList(ctx, "")
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ss := &c.sync
	ss.cursor = cursor
	for ch, seq := range c.opts.Since {
		ss.chats[ch] = &chatState{hw: seq}
	}
	for _, s := range list {
		st := ss.chats[s.Chat]
		if st == nil {
			ss.chats[s.Chat] = &chatState{hw: s.LastSeq}
		} else if s.LastSeq > st.hw && !s.Left {
			ss.needFill[s.Chat] = true
		}
	}
	for _, m := range ss.early {
		if st := ss.chats[m.Chat]; st != nil && m.Seq <= st.hw {
			if _, resumed := c.opts.Since[m.Chat]; !resumed {
				st.hw = m.Seq - 1
			}
		}
	}
	early := ss.early
	ss.early, ss.baselined = nil, true
	slices.SortStableFunc(early, func(a, b Message) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	c.mu.Unlock()
	for _, m := range early {
		c.accept(m, false)
	}
	c.mu.Lock()
	return nil
}

// syncer catches up after reconnects and fills gaps, one request at a
// time, for the client's lifetime.
func (c *Client) syncer() {
	for {
		select {
		case <-c.kick:
		case <-c.ctx.Done():
			return
		}
		c.mu.Lock()
		full, cursor := c.sync.needFull, c.sync.cursor
		c.sync.needFull = false
		c.mu.Unlock()
		if full {
			list, next, err := c.chatList(c.ctx, cursor)
			if err != nil {
				if c.ctx.Err() != nil {
					return
				}
				c.log.Warn("chat list sync failed; retrying", "err", err)
				c.mu.Lock()
				c.sync.needFull = true
				c.mu.Unlock()
				c.retryLater()
				continue
			}
			c.mu.Lock()
			c.sync.cursor = next
			for _, s := range list {
				st := c.sync.chats[s.Chat]
				if !s.Left && (st == nil || s.LastSeq > st.hw) {
					c.sync.needFill[s.Chat] = true
				}
			}
			c.mu.Unlock()
		}
		c.mu.Lock()
		chats := slices.Sorted(maps.Keys(c.sync.needFill))
		clear(c.sync.needFill)
		c.mu.Unlock()
		for _, ch := range chats {
			if err := c.fill(ch); err != nil {
				if c.ctx.Err() != nil {
					return
				}
				var e *Error
				if errors.As(err, &e) {
					// Not (or no longer) a member: nothing to fetch, and
					// what was held for it is all there is.
					c.log.Warn("chat history refused", "chat", ch, "err", err)
					c.flushPending(ch, nil)
					continue
				}
				c.mu.Lock()
				c.sync.needFill[ch] = true
				c.mu.Unlock()
				c.retryLater()
			}
		}
	}
}

// retryLater pokes the syncer again after a pause.
func (c *Client) retryLater() {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if c.sleep(c.ctx, c.opts.ReconnectMin) {
			c.poke()
		}
	}()
}

// fill pages chat's history from the last seq handed out to its end.
func (c *Client) fill(chat string) error {
	for {
		c.mu.Lock()
		var after uint64
		var held []uint64
		if st := c.sync.chats[chat]; st != nil {
			after, held = st.hw, slices.Collect(maps.Keys(st.pending))
		}
		c.mu.Unlock()
		rid := "h" + randomID(8)
		payload, _ := json.Marshal(map[string]any{"request_id": rid, "chat": chat, "after": after, "limit": 200})
		r, err := c.request(c.ctx, "req:"+rid, "sync", payload)
		if err != nil {
			return err
		}
		var page struct {
			Messages []Message `json:"messages"`
			Next     *uint64   `json:"next"`
		}
		if err := json.Unmarshal(r.raw, &page); err != nil {
			return err
		}
		for _, m := range page.Messages {
			c.accept(m, true)
		}
		if page.Next == nil {
			// The chat's end as of this read: messages held before it
			// was made are past seqs it did not show, hidden ones. Those
			// held since wait for the next round (accept asked for it).
			c.flushPending(chat, held)
			return nil
		}
		c.mu.Lock()
		if st := c.sync.chats[chat]; st != nil && *page.Next > st.hw {
			st.hw = *page.Next // the rest of a page whose end was hidden
		}
		c.mu.Unlock()
	}
}

// flushPending hands out chat's held messages of seqs only (all when nil)
// in seq order.
func (c *Client) flushPending(chat string, only []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.sync.chats[chat]
	if st == nil {
		return
	}
	seqs := only
	if seqs == nil {
		seqs = slices.Collect(maps.Keys(st.pending))
	}
	slices.Sort(seqs)
	for _, seq := range seqs {
		if m, ok := st.pending[seq]; ok && seq > st.hw {
			c.hand(st, m)
		}
	}
}
