package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/services/chat"
)

const defaultPage = 50

func (a *api) history(c *gin.Context) {
	q, err := parseHistoryQuery(c.Request.URL.Query())
	if err != nil {
		a.fail(c, err)
		return
	}
	page, err := a.opts.Chats.HistoryPage(c.Request.Context(), c.GetString(userKey), c.Param("chat"), q)
	if err != nil {
		a.chatError(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

func (a *api) send(c *gin.Context) {
	uid := c.GetString(userKey)
	env, err := sendEnvelope(uid, c.Param("chat"), c.GetHeader("Idempotency-Key"), c.Request.Body)
	if err != nil {
		abortRequest(c, err)
		return
	}
	res, err := a.opts.Chats.Send(c.Request.Context(), uid, env)
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
	q, err := parseChatListQuery(c.Request.URL.Query())
	if err != nil {
		a.fail(c, err)
		return
	}
	list, err := a.opts.Chats.ChatList(c.Request.Context(), c.GetString(userKey), q)
	if err != nil {
		a.chatError(c, err)
		return
	}
	c.JSON(http.StatusOK, list)
}

func (a *api) markRead(c *gin.Context) {
	var in readBody
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
		chat.CodeCMIDReused:       http.StatusUnprocessableEntity,
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
