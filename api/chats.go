package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/services/chat"
)

const defaultPage = 50

func (a *api) history(c *gin.Context) {
	var q chat.PageQuery
	var err error
	if q.After, err = seqParam(c, "after"); err != nil {
		return
	}
	if q.Before, err = seqParam(c, "before"); err != nil {
		return
	}
	_, q.Forward = c.GetQuery("after")
	if _, backward := c.GetQuery("before"); q.Forward && backward {
		abort(c, http.StatusBadRequest, "invalid_query", "use either after or before, not both")
		return
	}
	if q.Limit, err = limitParam(c); err != nil {
		return
	}
	page, err := a.opts.Chats.HistoryPage(c.Request.Context(), c.GetString(userKey), c.Param("chat"), q)
	if err != nil {
		a.chatError(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

// limitParam reads ?limit= (1-200, default 50), answering 400 itself.
func limitParam(c *gin.Context) (int, error) {
	s := c.Query("limit")
	if s == "" {
		return defaultPage, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 200 {
		abort(c, http.StatusBadRequest, "invalid_query", "limit must be an integer from 1 to 200")
		return 0, errors.New("bad limit")
	}
	return n, nil
}

func seqParam(c *gin.Context, name string) (uint64, error) {
	s := c.Query(name)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		abort(c, http.StatusBadRequest, "invalid_query", name+" must be a non-negative integer seq")
	}
	return v, err
}

type sendBody struct {
	Type    string          `json:"type"`
	Body    json.RawMessage `json:"body"`
	ReplyTo uint64          `json:"reply_to,omitempty"`
}

func (a *api) send(c *gin.Context) {
	uid := c.GetString(userKey)
	chatID := c.Param("chat")
	cmid := c.GetHeader("Idempotency-Key")
	if cmid == "" {
		abort(c, http.StatusBadRequest, "invalid_payload", "the Idempotency-Key header is required (it is the message's cmid)")
		return
	}
	var to string
	if x, y, ok := chat.DirectMembers(chatID); ok && (uid == x || uid == y) {
		to = "user:" + x
		if uid == x {
			to = "user:" + y
		}
	} else if gid, ok := chat.GroupID(chatID); ok {
		to = "group:" + gid // membership is checked by the pipeline
	} else {
		abort(c, http.StatusForbidden, string(chat.CodeNotAuthorized), "not a member of this chat")
		return
	}
	var in sendBody
	if !bindJSON(c, &in) {
		return
	}
	res, err := a.opts.Chats.Send(c.Request.Context(), uid, chat.Envelope{
		To: to, CMID: cmid, Type: in.Type, Body: in.Body, ReplyTo: in.ReplyTo,
	})
	if err != nil {
		a.chatError(c, err)
		return
	}
	if res.Duplicate {
		c.Header("Idempotent-Replayed", "true")
	}
	v := chat.View(res.Message)
	c.JSON(http.StatusCreated, gin.H{"chat": v.Chat, "seq": v.Seq, "id": v.ID})
}

func (a *api) chatList(c *gin.Context) {
	q := chat.ListQuery{After: c.Query("after")}
	var err error
	if q.Limit, err = limitParam(c); err != nil {
		return
	}
	if s := c.Query("changed_since"); s != "" {
		t, err := chat.ParseSyncCursor(s)
		if err != nil {
			a.chatError(c, err)
			return
		}
		q.ChangedSince = t
	}
	list, err := a.opts.Chats.ChatList(c.Request.Context(), c.GetString(userKey), q)
	if err != nil {
		a.chatError(c, err)
		return
	}
	c.JSON(http.StatusOK, list)
}

func (a *api) markRead(c *gin.Context) {
	var in struct {
		Seq uint64 `json:"seq"`
	}
	if !bindJSON(c, &in) {
		return
	}
	st, err := a.opts.Chats.MarkRead(c.Request.Context(), c.GetString(userKey), c.Param("chat"), in.Seq)
	if err != nil {
		a.chatError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"chat": st.Chat, "read_seq": st.ReadSeq, "delivered_seq": st.DeliveredSeq})
}

func (a *api) chatError(c *gin.Context, err error) {
	code := chat.CodeOf(err)
	status := map[chat.Code]int{
		chat.CodeInvalid:          http.StatusBadRequest,
		chat.CodeTooLarge:         http.StatusRequestEntityTooLarge,
		chat.CodeUnknownRecipient: http.StatusNotFound,
		chat.CodeNotAuthorized:    http.StatusForbidden,
		chat.CodeNotFound:         http.StatusNotFound,
		chat.CodeQuota:            http.StatusTooManyRequests,
		chat.CodeConflict:         http.StatusConflict,
		chat.CodeUnavailable:      http.StatusServiceUnavailable,
		chat.CodeRateLimited:      http.StatusTooManyRequests,
	}[code]
	if status == 0 {
		a.internal(c, err)
		return
	}
	var ce *chat.Error
	if errors.As(err, &ce) && ce.RetryAfter > 0 {
		// Whole seconds, rounded up: retrying early would only be refused again.
		c.Header("Retry-After", strconv.FormatInt(int64((ce.RetryAfter+time.Second-1)/time.Second), 10))
	}
	abort(c, status, string(code), chat.MessageOf(err))
}
