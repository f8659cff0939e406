package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/services/chat"
)

const defaultPage = 50

func (a *api) history(c *gin.Context) {
	q, err := parseHistoryQuery(c.Request.URL.Query())
	if err != nil {
		fail(c, err)
		return
	}
	page, err := a.opts.Chats.HistoryPage(c.Request.Context(), c.GetString(userKey), c.Param("chat"), q)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, page)
}

func (a *api) send(c *gin.Context) {
	uid := c.GetString(userKey)
	env, err := sendEnvelope(uid, c.Param("chat"), c.GetHeader("Idempotency-Key"), c.Request.Body)
	if err != nil {
		fail(c, err)
		return
	}
	res, err := a.opts.Chats.Send(c.Request.Context(), uid, env)
	if err != nil {
		fail(c, err)
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
		fail(c, err)
		return
	}
	list, err := a.opts.Chats.ChatList(c.Request.Context(), c.GetString(userKey), q)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, list)
}

func (a *api) markRead(c *gin.Context) {
	var in readBody
	if !bindJSON(c, &in) {
		return
	}
	seq, err := in.readSeq()
	if err != nil {
		fail(c, err)
		return
	}
	st, err := a.opts.Chats.MarkRead(c.Request.Context(), c.GetString(userKey), c.Param("chat"), seq)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"chat": st.Chat, "read_seq": st.ReadSeq, "delivered_seq": st.DeliveredSeq})
}
