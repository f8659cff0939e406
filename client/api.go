package client

import (
	"context"
	"encoding/json"
	"fmt"
)

// Outgoing is a chat message to send.
type Outgoing struct {
	To      string // "user:{id}" or "group:{id}"
	Body    any    // any JSON value; a string for text
	Type    string // default "text"
	ReplyTo uint64 // a seq of the same chat, or 0
	// CMID is the idempotency key; default a new random one. Set it to
	// resend, after a restart, a message whose Send never returned.
	CMID string
}

// Send sends a text (or any JSON) body to "user:{id}" or "group:{id}".
func (c *Client) Send(ctx context.Context, to string, body any) (Sent, error) {
	return c.SendMessage(ctx, Outgoing{To: to, Body: body})
}

// SendMessage sends m and returns once the server has stored it. It
// publishes with the same cmid until the server acknowledges it, across
// reconnects and refusals the server asks to retry (rate limits, a busy
// or restarting server); the server stores a cmid once, so a retry never
// makes a second message. It gives up only when ctx ends or the server
// refuses the message for good (*Error: invalid_payload, unknown_recipient,
// not_authorized, payload_too_large, cmid_reused).
func (c *Client) SendMessage(ctx context.Context, m Outgoing) (Sent, error) {
	if m.CMID == "" {
		m.CMID = randomID(12)
	}
	if m.Type == "" {
		m.Type = "text"
	}
	env := map[string]any{"to": m.To, "cmid": m.CMID, "type": m.Type, "body": m.Body}
	if m.ReplyTo != 0 {
		env["reply_to"] = m.ReplyTo
	}
	return c.sendEnvelope(ctx, m.CMID, env)
}

// sendEnvelope publishes a send envelope until it is stored. The answer is
// the message's copy on the user's own inbox (live, or fetched by a sync)
// for a first send, or a "sent" event for one the server had already.
func (c *Client) sendEnvelope(ctx context.Context, cmid string, env map[string]any) (Sent, error) {
	payload, err := json.Marshal(env)
	if err != nil {
		return Sent{}, fmt.Errorf("encode message: %w", err)
	}
	r, err := c.request(ctx, "cmid:"+cmid, "send", payload)
	if err != nil {
		return Sent{CMID: cmid}, fmt.Errorf("send %s: %w", cmid, err)
	}
	if r.msg != nil {
		return Sent{CMID: cmid, Chat: r.msg.Chat, Seq: r.msg.Seq, ID: r.msg.ID}, nil
	}
	var e struct {
		Chat      string `json:"chat"`
		Seq       uint64 `json:"seq"`
		ID        string `json:"id"`
		Duplicate bool   `json:"duplicate"`
	}
	if err := json.Unmarshal(r.raw, &e); err != nil {
		return Sent{CMID: cmid}, fmt.Errorf("send %s: %w", cmid, err)
	}
	return Sent{CMID: cmid, Chat: e.Chat, Seq: e.Seq, ID: e.ID, Duplicate: e.Duplicate}, nil
}

// MarkRead moves the user's read cursor in chat to seq (never backwards).
func (c *Client) MarkRead(ctx context.Context, chat string, seq uint64) error {
	payload, _ := json.Marshal(map[string]any{"chat": chat, "read_seq": seq})
	if err := c.publishAcked(ctx, "receipts", payload); err != nil {
		return fmt.Errorf("mark read %s: %w", chat, err)
	}
	return nil
}

// Typing tells chat's other members the user is typing. It is fire and
// forget (QoS 0): call it every few seconds while the user types.
func (c *Client) Typing(ctx context.Context, chat string) error {
	s, err := c.session(ctx)
	if err != nil {
		return err
	}
	payload, _ := json.Marshal(map[string]string{"chat": chat})
	return s.publish(ctx, c.topic("typing"), 0, payload)
}

// Presence watches uid's presence: its current state and every change
// arrive as "presence" events, across reconnects, until StopPresence. The
// server allows it for the user itself and for users sharing a chat;
// otherwise the answer is *Error not_authorized.
func (c *Client) Presence(ctx context.Context, uid string) error {
	// Watched before subscribing, so a reconnect in between subscribes it
	// on the new connection too.
	c.mu.Lock()
	was := c.watched[uid]
	c.watched[uid] = true
	c.mu.Unlock()
	s, err := c.session(ctx)
	if err == nil {
		err = s.subscribe(ctx, "presence/"+uid)
	}
	if err == nil {
		return nil
	}
	if !was {
		c.mu.Lock()
		delete(c.watched, uid)
		c.mu.Unlock()
	}
	if r, ok := err.(*refusal); ok {
		return &Error{Code: "not_authorized", Message: r.Error()}
	}
	return fmt.Errorf("watch presence of %s: %w", uid, err)
}

// StopPresence ends a Presence watch.
func (c *Client) StopPresence(ctx context.Context, uid string) error {
	c.mu.Lock()
	delete(c.watched, uid)
	c.mu.Unlock()
	s, err := c.session(ctx)
	if err != nil {
		return err
	}
	return s.unsubscribe(ctx, "presence/"+uid)
}

// groupOp runs one group operation, retried with the same op id until
// its result arrives (the server applies an op id once).
func (c *Client) groupOp(ctx context.Context, op map[string]any) (*Group, error) {
	id := randomID(12)
	op["op_id"] = id
	payload, _ := json.Marshal(op)
	r, err := c.request(ctx, "op:"+id, "groups", payload)
	if err != nil {
		return nil, fmt.Errorf("group %s: %w", op["op"], err)
	}
	var res struct {
		OK      bool   `json:"ok"`
		Code    string `json:"code"`
		Message string `json:"message"`
		Group   *Group `json:"group"`
	}
	if err := json.Unmarshal(r.raw, &res); err != nil {
		return nil, fmt.Errorf("group %s: %w", op["op"], err)
	}
	if !res.OK {
		return nil, fmt.Errorf("group %s: %w", op["op"], &Error{Code: res.Code, Message: res.Message})
	}
	return res.Group, nil
}

// CreateGroup makes a group named name with the user as owner and
// userIDs as the other members.
func (c *Client) CreateGroup(ctx context.Context, name string, userIDs ...string) (Group, error) {
	op := map[string]any{"op": "create", "name": name}
	if len(userIDs) > 0 {
		op["user_ids"] = userIDs
	}
	g, err := c.groupOp(ctx, op)
	if err != nil {
		return Group{}, err
	}
	return *g, nil
}

// AddMembers adds users to a group (owner or admin only).
func (c *Client) AddMembers(ctx context.Context, groupID string, userIDs ...string) error {
	_, err := c.groupOp(ctx, map[string]any{"op": "add_members", "group_id": groupID, "user_ids": userIDs})
	return err
}

// RemoveMember removes a user from a group; the user's own id leaves it.
func (c *Client) RemoveMember(ctx context.Context, groupID, userID string) error {
	_, err := c.groupOp(ctx, map[string]any{"op": "remove_member", "group_id": groupID, "user_id": userID})
	return err
}

// Edit replaces the body of the user's own message at seq in chat (to is
// the chat's "user:{id}" or "group:{id}"), within the server's edit
// window. The edit is a message of its own (type "edit") that every
// device receives; the answer is where it was stored. Refusals:
// not_found, not_authorized (not the sender), conflict (window passed,
// message deleted).
func (c *Client) Edit(ctx context.Context, to string, seq uint64, body any) (Sent, error) {
	cmid := randomID(12)
	return c.sendEnvelope(ctx, cmid, map[string]any{"to": to, "cmid": cmid, "edit": map[string]any{"seq": seq}, "body": body})
}

// Delete deletes the message at seq for everyone: its sender may, and in
// a group an owner or admin. Deleting a deleted message succeeds.
func (c *Client) Delete(ctx context.Context, to string, seq uint64) (Sent, error) {
	cmid := randomID(12)
	return c.sendEnvelope(ctx, cmid, map[string]any{"to": to, "cmid": cmid, "delete": map[string]any{"seq": seq}})
}

// React adds the user's emoji reaction to the message at seq; Unreact
// removes it. Both are idempotent.
func (c *Client) React(ctx context.Context, to string, seq uint64, emoji string) (Sent, error) {
	cmid := randomID(12)
	return c.sendEnvelope(ctx, cmid, map[string]any{"to": to, "cmid": cmid, "react": map[string]any{"seq": seq, "emoji": emoji}})
}

// Unreact removes the user's emoji reaction from the message at seq.
func (c *Client) Unreact(ctx context.Context, to string, seq uint64, emoji string) (Sent, error) {
	cmid := randomID(12)
	return c.sendEnvelope(ctx, cmid, map[string]any{"to": to, "cmid": cmid, "unreact": map[string]any{"seq": seq, "emoji": emoji}})
}
