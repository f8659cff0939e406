package api

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/services/chat"
)

// Edit, delete and react over REST: each builds the same envelope a client
// publishes on users/{me}/send, so the chat service validates and stores it
// the same way, and answers like a send.
func (a *api) routeMessages(authed *gin.RouterGroup) {
	authed.PATCH("/chats/:chat/messages/:seq", a.editMessage)
	authed.DELETE("/chats/:chat/messages/:seq", a.deleteMessage)
	authed.PUT("/chats/:chat/messages/:seq/reactions/:emoji", a.react)
	authed.DELETE("/chats/:chat/messages/:seq/reactions/:emoji", a.unreact)
}

// editBody is PATCH /v1/chats/{chat}/messages/{seq}. The cmid may come in
// the body or as the Idempotency-Key header, as on a send.
type editBody struct {
	Body json.RawMessage `json:"body"`
	CMID string          `json:"cmid"`
}

// ChangeAnswer is what an edit, delete or reaction answers: the change
// message's identity, or for a change that changed nothing (deleting a
// deleted message, a reaction already there) the target's, with duplicate.
type ChangeAnswer struct {
	Chat      string `json:"chat"`
	Seq       uint64 `json:"seq"`
	ID        string `json:"id"`
	SentAt    string `json:"sent_at"`
	Duplicate bool   `json:"duplicate"`
}

func (a *api) editMessage(c *gin.Context) {
	var in editBody
	if !bindJSON(c, &in) {
		return
	}
	cmid := in.CMID
	if key := c.GetHeader("Idempotency-Key"); key != "" {
		if cmid != "" && cmid != key {
			fail(c, invalid("cmid", "cmid and the Idempotency-Key header differ; send one of them"))
			return
		}
		cmid = key
	}
	a.change(c, cmid, in.Body, func(env *chat.Envelope, seq uint64) { env.Edit = &chat.TargetRef{Seq: seq} })
}

func (a *api) deleteMessage(c *gin.Context) {
	a.change(c, c.GetHeader("Idempotency-Key"), nil, func(env *chat.Envelope, seq uint64) {
		env.Delete = &chat.TargetRef{Seq: seq}
	})
}

func (a *api) react(c *gin.Context) {
	a.change(c, c.GetHeader("Idempotency-Key"), nil, func(env *chat.Envelope, seq uint64) {
		env.React = &chat.ReactionRef{Seq: seq, Emoji: c.Param("emoji")}
	})
}

func (a *api) unreact(c *gin.Context) {
	a.change(c, c.GetHeader("Idempotency-Key"), nil, func(env *chat.Envelope, seq uint64) {
		env.Unreact = &chat.ReactionRef{Seq: seq, Emoji: c.Param("emoji")}
	})
}

// change sends the change set makes to the message the path names.
func (a *api) change(c *gin.Context, cmid string, body json.RawMessage, set func(env *chat.Envelope, seq uint64)) {
	uid := c.GetString(userKey)
	if cmid == "" {
		fail(c, invalid("Idempotency-Key", "the Idempotency-Key header is required (it is the change's cmid)"))
		return
	}
	seq, err := strconv.ParseUint(c.Param("seq"), 10, 64)
	if err != nil || seq == 0 {
		fail(c, invalid("seq", "seq must be the seq of a message of the chat (1 or more)"))
		return
	}
	to, ok := chat.Address(uid, c.Param("chat"))
	switch {
	case !chat.ValidChatID(c.Param("chat")):
		fail(c, &chat.Error{Code: chat.CodeNotFound, Field: "chat", Message: "no such chat: not a chat id"})
		return
	case !ok: // another pair's 1:1 chat
		fail(c, &chat.Error{Code: chat.CodeNotAuthorized, Field: "chat", Message: "not a member of this chat"})
		return
	}
	env := chat.Envelope{To: to, CMID: cmid, Body: body}
	set(&env, seq)
	res, err := a.opts.Chats.Send(c.Request.Context(), uid, env)
	if err != nil {
		fail(c, err)
		return
	}
	if res.Duplicate {
		c.Header("Idempotent-Replayed", "true")
	}
	v := chat.View(res.Message)
	c.JSON(http.StatusOK, ChangeAnswer{Chat: v.Chat, Seq: v.Seq, ID: v.ID, SentAt: v.SentAt, Duplicate: res.Duplicate})
}
