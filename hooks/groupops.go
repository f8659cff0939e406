package hooks

import (
	"context"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/services/groups"
	"github.com/mqchat/mqchat/store"
)

// GroupOps is the group service as users/{uid}/groups uses it.
type GroupOps interface {
	// CreateWithID creates the group gid, or returns it when actor already
	// created it (a retry).
	CreateWithID(ctx context.Context, actor, gid, name string, members []string) (groups.View, error)
	Get(ctx context.Context, actor, gid string) (groups.View, error)
	Rename(ctx context.Context, actor, gid, name string) (groups.View, error)
	Delete(ctx context.Context, actor, gid string) error
	AddMembers(ctx context.Context, actor, gid string, users []string) (groups.View, error)
	RemoveMember(ctx context.Context, actor, gid, uid string) error
	SetRole(ctx context.Context, actor, gid, uid string, role store.Role) (groups.View, error)
	AcceptInvite(ctx context.Context, uid, gid string) (groups.View, error)
	DeclineInvite(ctx context.Context, uid, gid string) error
}

// groupOpRequest is a group operation an offline-first client queued; op_id
// makes a retry of it harmless.
type groupOpRequest struct {
	OpID    string   `json:"op_id"`
	Op      string   `json:"op"`
	GroupID string   `json:"group_id"`
	Name    string   `json:"name"`
	UserIDs []string `json:"user_ids"`
	UserID  string   `json:"user_id"`
	Role    string   `json:"role"`
}

// GroupOpEvent is the result of a group operation, on users/{uid}/events.
type GroupOpEvent struct {
	Type    string       `json:"type"` // "group_op"
	OpID    string       `json:"op_id"`
	Op      string       `json:"op,omitempty"`
	OK      bool         `json:"ok"`
	GroupID string       `json:"group_id,omitempty"`
	Group   *groups.View `json:"group,omitempty"`
	// AlreadyApplied: the operation had nothing left to do (a member
	// already gone, a group already deleted), which a retry expects.
	AlreadyApplied bool   `json:"already_applied,omitempty"`
	Code           string `json:"code,omitempty"`
	ReasonCode     byte   `json:"reason_code,omitempty"`
	Message        string `json:"message,omitempty"`
	Field          string `json:"field,omitempty"` // as in error events
}

// groupOpFields lists, per op, the fields it requires and (after a '?')
// the ones it may carry; any other field set is refused.
var groupOpFields = map[string][]string{
	"create":        {"name", "?user_ids"},
	"rename":        {"group_id", "name"},
	"delete":        {"group_id"},
	"add_members":   {"group_id", "user_ids"},
	"remove_member": {"group_id", "user_id"},
	"set_role":      {"group_id", "user_id", "role"},
	// Invitations (limits.group_invites consent) of the requester.
	"accept_invite":  {"group_id"},
	"decline_invite": {"group_id"},
}

// groupOp applies a group operation. Every outcome of a request with a
// valid op_id is a group_op event (ok or not); a request without one gets
// an error event.
func (h *Chat) groupOp(cl *mqtt.Client, uid string, pk packets.Packet) error {
	if h.opts.Groups == nil {
		return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{}, notEnabled(pk.TopicName))
	}
	req, err := decodeGroupOp(pk.Payload)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), h.opts.RequestTimeout)
		defer cancel()
		var ev GroupOpEvent
		if ev, err = h.applyGroupOp(ctx, uid, req); err == nil {
			h.opts.Events.Event(uid, ev)
			return packets.CodeSuccessIgnore
		}
	}
	if !validID(req.OpID) {
		return h.refuse(cl, uid, pk, replyTo{}, ErrorEvent{}, err)
	}
	code := chat.CodeOf(err)
	rc := reasonCode(code)
	h.opts.Logger.Debug("group operation failed", "client", cl.ID, "op", req.Op, "code", code, "error", err)
	ev := GroupOpEvent{
		Type: "group_op", OpID: req.OpID, Op: req.Op, GroupID: req.GroupID,
		Code: string(code), ReasonCode: rc.Code, Message: chat.MessageOf(err), Field: chat.FieldOf(err),
	}
	if _, known := groupOpFields[req.Op]; !known {
		ev.Op = "" // never echo back what failed validation
	}
	if !ids.ValidUserID(ev.GroupID) {
		ev.GroupID = ""
	}
	h.opts.Events.Event(uid, ev)
	return ack(cl, pk, rc)
}

// decodeGroupOp parses and checks a request. On error the returned request
// holds whatever could be read, for the result event.
func decodeGroupOp(payload []byte) (groupOpRequest, error) {
	var req groupOpRequest
	if err := decodeRequest(payload, &req); err != nil {
		return groupOpRequest{OpID: peekID(payload, "op_id")}, err
	}
	if !validID(req.OpID) {
		return groupOpRequest{}, invalidRequest("op_id", "op_id must be "+idRule)
	}
	fields, ok := groupOpFields[req.Op]
	if !ok {
		return req, invalidRequest("op", "op must be one of create, rename, delete, add_members, remove_member, set_role, accept_invite, decline_invite")
	}
	set := map[string]bool{
		"group_id": req.GroupID != "", "name": req.Name != "", "user_ids": req.UserIDs != nil,
		"user_id": req.UserID != "", "role": req.Role != "",
	}
	for _, f := range fields {
		f, optional := strings.CutPrefix(f, "?")
		if !set[f] && !optional {
			return req, invalidRequest(f, f+" is required for "+req.Op)
		}
		delete(set, f)
	}
	for _, f := range []string{"group_id", "name", "user_ids", "user_id", "role"} {
		if set[f] {
			return req, invalidRequest(f, f+" is not used by "+req.Op)
		}
	}
	if req.Op == "add_members" && len(req.UserIDs) == 0 {
		return req, invalidRequest("user_ids", "user_ids must list at least one user")
	}
	if req.GroupID != "" && !ids.ValidUserID(req.GroupID) { // group ids are shaped like user ids
		return req, &chat.Error{Code: chat.CodeNotFound, Field: "group_id", Message: "no such group: " + req.GroupID}
	}
	return req, nil
}

// applyGroupOp runs one operation. Retries are harmless: create finds the
// group its first attempt made (the id derives from uid and op_id),
// add_members skips members already in, rename and set_role set the same
// value again, and remove_member, delete, accept_invite or decline_invite
// with nothing left to do report success with already_applied.
func (h *Chat) applyGroupOp(ctx context.Context, uid string, req groupOpRequest) (GroupOpEvent, error) {
	g := h.opts.Groups
	ev := GroupOpEvent{Type: "group_op", OpID: req.OpID, Op: req.Op, OK: true, GroupID: req.GroupID}
	var (
		v   groups.View
		err error
	)
	switch req.Op {
	case "create":
		v, err = g.CreateWithID(ctx, uid, groups.DeriveID(uid, req.OpID), req.Name, req.UserIDs)
	case "rename":
		v, err = g.Rename(ctx, uid, req.GroupID, req.Name)
	case "add_members":
		v, err = g.AddMembers(ctx, uid, req.GroupID, req.UserIDs)
	case "set_role":
		v, err = g.SetRole(ctx, uid, req.GroupID, req.UserID, store.Role(req.Role))
	case "delete":
		err = g.Delete(ctx, uid, req.GroupID)
		if chat.CodeOf(err) == chat.CodeNotFound {
			// Gone, or never visible to uid: either way there is nothing
			// left to delete, which is what a retry after a lost answer sees.
			ev.AlreadyApplied, err = true, nil
		}
		return ev, err
	case "remove_member":
		return h.removeMember(ctx, uid, req, ev)
	case "accept_invite":
		v, err = g.AcceptInvite(ctx, uid, req.GroupID)
		if chat.CodeOf(err) == chat.CodeNotFound {
			// No invitation left: a retry after the first accept finds
			// uid a member already.
			if cur, gerr := g.Get(ctx, uid, req.GroupID); gerr == nil {
				v, err, ev.AlreadyApplied = cur, nil, true
			}
		}
	case "decline_invite":
		err = g.DeclineInvite(ctx, uid, req.GroupID)
		if chat.CodeOf(err) == chat.CodeNotFound {
			ev.AlreadyApplied, err = true, nil // declined already, or never invited
		}
		return ev, err
	}
	if err != nil {
		return ev, err
	}
	ev.GroupID, ev.Group = v.GroupID, &v
	return ev, nil
}

// removeMember removes req.UserID; a user already gone is a success.
func (h *Chat) removeMember(ctx context.Context, uid string, req groupOpRequest, ev GroupOpEvent) (GroupOpEvent, error) {
	g := h.opts.Groups
	err := g.RemoveMember(ctx, uid, req.GroupID, req.UserID)
	if err != nil && chat.CodeOf(err) != chat.CodeNotFound {
		return ev, err
	}
	if err != nil && req.UserID == uid {
		ev.AlreadyApplied = true // left already: the group is invisible to uid now
		return ev, nil
	}
	if req.UserID == uid {
		return ev, nil // uid left; the group is no longer theirs to see
	}
	v, gerr := g.Get(ctx, uid, req.GroupID)
	if err != nil {
		// Not found: the group (for uid), or the user in it. Only the
		// latter is "already applied".
		if gerr != nil || memberOf(v, req.UserID) {
			return ev, err
		}
		ev.AlreadyApplied = true
	}
	if gerr == nil {
		ev.Group = &v
	}
	return ev, nil
}

func memberOf(v groups.View, uid string) bool {
	for _, m := range v.Members {
		if m.UserID == uid {
			return true
		}
	}
	return false
}
