package api

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mqchat/mqchat/store"
)

// Blocks is what the API needs from the consent service.
type Blocks interface {
	Block(ctx context.Context, uid, other string) (store.Block, error)
	Unblock(ctx context.Context, uid, other string) error
	List(ctx context.Context, uid string) ([]store.Block, error)
}

// BlockView is one blocked user in REST answers.
type BlockView struct {
	UserID    string `json:"user_id"`
	CreatedAt string `json:"created_at"`
}

func blockView(b store.Block) BlockView {
	return BlockView{UserID: b.BlockedID, CreatedAt: b.CreatedAt.UTC().Format(time.RFC3339Nano)}
}

type blockBody struct {
	UserID string `json:"user_id"`
}

// decodeBlock reads POST /v1/blocks; the id's shape is the service's to
// check, like every other rule about blocks.
func decodeBlock(body io.Reader) (blockBody, error) {
	var in blockBody
	if err := decodeJSON(body, &in); err != nil {
		return blockBody{}, err
	}
	if in.UserID == "" {
		return blockBody{}, invalid("user_id", "user_id is required")
	}
	return in, nil
}

// ChatRequests accepts message requests (services/consent).
type ChatRequests interface {
	Accept(ctx context.Context, uid, chat string) error
}

// routeConsent adds blocks, privacy settings and message requests.
func (a *api) routeConsent(r gin.IRoutes) {
	if a.opts.Blocks != nil {
		r.GET("/blocks", a.listBlocks)
		r.POST("/blocks", a.block)
		r.DELETE("/blocks/:user_id", a.unblock)
	}
	if a.opts.Privacy != nil {
		r.GET("/me/privacy", a.getPrivacy)
		r.PATCH("/me/privacy", a.patchPrivacy)
	}
	if a.opts.ChatRequests != nil {
		r.POST("/chats/:chat/accept", a.acceptChat)
	}
}

// acceptChat answers POST /v1/chats/{chat}/accept: 204 whether or not the
// chat was a request (accepting twice is harmless).
func (a *api) acceptChat(c *gin.Context) {
	if err := a.opts.ChatRequests.Accept(c.Request.Context(), c.GetString(userKey), c.Param("chat")); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// block answers POST /v1/blocks: idempotent, 200 with the block (its
// created_at is the first block's).
func (a *api) block(c *gin.Context) {
	in, err := decodeBlock(c.Request.Body)
	if err != nil {
		fail(c, err)
		return
	}
	b, err := a.opts.Blocks.Block(c.Request.Context(), c.GetString(userKey), in.UserID)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, blockView(b))
}

func (a *api) unblock(c *gin.Context) {
	if err := a.opts.Blocks.Unblock(c.Request.Context(), c.GetString(userKey), c.Param("user_id")); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// listBlocks answers GET /v1/blocks: the caller's blocks ordered by user
// id, one page (a list is bounded by limits.max_blocks).
func (a *api) listBlocks(c *gin.Context) {
	bs, err := a.opts.Blocks.List(c.Request.Context(), c.GetString(userKey))
	if err != nil {
		fail(c, err)
		return
	}
	out := make([]BlockView, len(bs))
	for i, b := range bs {
		out[i] = blockView(b)
	}
	c.JSON(http.StatusOK, gin.H{"blocks": out})
}
