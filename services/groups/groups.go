// Package groups manages group chats: creation, renaming, deletion,
// membership and roles. Every change is recorded as a system message in the
// group's chat (so it has a seq and syncs like any message) and announced as
// an event to every affected member.
package groups

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mqchat/mqchat/internal/ids"
	"github.com/mqchat/mqchat/internal/ratelimit"
	"github.com/mqchat/mqchat/services/chat"
	"github.com/mqchat/mqchat/store"
)

// Store is the slice of the storage contract this service uses.
type Store interface {
	store.Groups
	UsersByID(ctx context.Context, ids []string) (map[string]store.User, error)
	JoinChat(ctx context.Context, uid, chat string, at time.Time) error
	LeaveChat(ctx context.Context, uid, chat string, at time.Time) error
	// LastSeq tells a deleted group (its chat has messages) from one that
	// never existed.
	LastSeq(ctx context.Context, chat string) (uint64, error)
}

// Chats records changes in the group's chat.
type Chats interface {
	SendSystem(ctx context.Context, gid, actor string, body []byte, recipients []string) (store.Message, error)
}

// Events tells users' devices about changes.
type Events interface {
	Event(uid string, v any)
}

// LimitObserver counts refused group changes.
type LimitObserver interface{ ObserveLimitRefusals(limit string, n int) }

// LimitGroupOps names the group change rate in LimitObserver.
const LimitGroupOps = "group_op_rate"

// Membership is told of every change to who is in which group, right after
// the store write, whether or not it reported success (a write that failed
// may still have landed, and a needless notice only costs a recomputation).
// It keeps in-memory relations, such as who may see whose presence, exact.
type Membership interface {
	MembersChanged(gid string, uids []string)
	GroupDeleted(gid string)
}

// Options configures the service.
type Options struct {
	MaxMembers int        // including the owner
	Membership Membership // nil = nobody is told
	Logger     *slog.Logger
	Now        func() time.Time
	// OpRate and OpBurst bound each user's changes (create, rename,
	// delete, membership, roles) per second, whichever transport they come
	// from; every change writes a system message to all members. OpRate 0
	// means unlimited.
	OpRate, OpBurst int
	Metrics         LimitObserver // nil = not counted
	// Consent, when set, screens the users put in a group (see
	// invites.go); nil = everyone named is added at once.
	Consent Consent
}

// Service implements group management.
type Service struct {
	st     Store
	chats  Chats
	events Events
	opts   Options
	// creating serialises CreateWithID per group id (striped), so a retry
	// racing its first attempt sees the group either absent or complete.
	creating [32]sync.Mutex
	ops      *ratelimit.Keyed // per acting user; nil = unlimited
}

// New returns the service.
func New(st Store, chats Chats, events Events, opts Options) *Service {
	if opts.MaxMembers <= 0 {
		opts.MaxMembers = 500
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Membership == nil {
		opts.Membership = nopMembership{}
	}
	return &Service{st: st, chats: chats, events: events, opts: opts, ops: ratelimit.New(opts.OpRate, opts.OpBurst)}
}

// admit takes one of actor's change tokens. The buckets refill whole
// tokens per second, so the next one is never more than a second away.
func (s *Service) admit(actor string) error {
	if s.ops.Allow(actor) {
		return nil
	}
	if s.opts.Metrics != nil {
		s.opts.Metrics.ObserveLimitRefusals(LimitGroupOps, 1)
	}
	return &chat.Error{
		Code:       chat.CodeRateLimited,
		Message:    fmt.Sprintf("group changes come too fast: at most %d a second (%d at once); retry later", s.opts.OpRate, s.opts.OpBurst),
		RetryAfter: time.Second,
	}
}

type nopMembership struct{}

func (nopMembership) MembersChanged(string, []string) {}
func (nopMembership) GroupDeleted(string)             {}

// View is a group as its members see it.
type View struct {
	GroupID   string       `json:"group_id"`
	Chat      string       `json:"chat"`
	Name      string       `json:"name"`
	CreatedBy string       `json:"created_by"`
	CreatedAt time.Time    `json:"created_at"`
	Members   []MemberView `json:"members"`
}

// MemberView is one member in a View.
type MemberView struct {
	UserID   string     `json:"user_id"`
	Role     store.Role `json:"role"`
	JoinedAt time.Time  `json:"joined_at"`
}

// Event is what members' devices receive on users/{uid}/events.
type Event struct {
	Type    string   `json:"type"` // "group"
	Op      string   `json:"op"`
	GroupID string   `json:"group_id"`
	By      string   `json:"by"`
	Seq     uint64   `json:"seq,omitempty"` // of the system message recording the change
	Name    string   `json:"name,omitempty"`
	Users   []string `json:"users,omitempty"`
	Role    string   `json:"role,omitempty"`
}

// system is the body of a system message.
type system struct {
	Op    string   `json:"op"`
	By    string   `json:"by"`
	Name  string   `json:"name,omitempty"`
	Users []string `json:"users,omitempty"`
	Role  string   `json:"role,omitempty"`
}

const maxName = 100

func invalid(msg string) error   { return &chat.Error{Code: chat.CodeInvalid, Message: msg} }
func forbidden(msg string) error { return &chat.Error{Code: chat.CodeNotAuthorized, Message: msg} }
func conflict(msg string) error  { return &chat.Error{Code: chat.CodeConflict, Message: msg} }

func notFound(gid string) error {
	return &chat.Error{Code: chat.CodeNotFound, Message: "no such group: " + gid}
}

func (s *Service) internal(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return &chat.Error{Code: chat.CodeUnavailable, Message: "request cancelled or timed out", Err: err}
	}
	s.opts.Logger.Error("groups store failure", "op", op, "error", err)
	return &chat.Error{Code: chat.CodeInternal, Message: "storage failure, retry later", Err: fmt.Errorf("%s: %w", op, err)}
}

// cleanName trims a group name and checks it: 1 to maxName characters of
// UTF-8 without control characters. Every member's app shows the name, and
// a PostgreSQL text column cannot hold NUL or invalid UTF-8.
func cleanName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || utf8.RuneCountInString(name) > maxName {
		return "", invalid(fmt.Sprintf("name must be 1 to %d characters", maxName))
	}
	if !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return "", invalid("name must be UTF-8 text without control characters")
	}
	return name, nil
}

// Create makes a group owned by actor with the given other members.
func (s *Service) Create(ctx context.Context, actor, name string, members []string) (View, error) {
	if err := s.admit(actor); err != nil {
		return View{}, err
	}
	return s.create(ctx, actor, ids.NewUserID(), name, members)
}

// DeriveID is the group id for a client's operation id: a hash of (actor,
// opID) shaped like every other id. A retried operation names the same
// group, and no other user's operation can name it.
func DeriveID(actor, opID string) string {
	sum := sha256.Sum256([]byte("mqchat/group\x00" + actor + "\x00" + opID))
	return strings.ToLower(base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:13]))[:20]
}

// CreateWithID makes a group with a caller-chosen id (see DeriveID), so that
// a retried request finds what its first attempt made instead of making a
// second group:
//   - no group gid has ever existed: it is created as Create does;
//   - gid exists and actor created it: it is returned as it is now, a
//     success (after finishing what a failed first attempt left undone);
//   - gid exists and someone else created it: conflict;
//   - gid existed and was deleted (its chat has messages): not found. It is
//     never made again, so a late retry cannot reopen deleted history to
//     the members it names.
func (s *Service) CreateWithID(ctx context.Context, actor, gid, name string, members []string) (View, error) {
	if err := s.admit(actor); err != nil {
		return View{}, err
	}
	if !ids.ValidUserID(gid) {
		return View{}, invalid("group id must be 20 characters of 0-9 a-v")
	}
	mu := &s.creating[fnv32(gid)%uint32(len(s.creating))]
	mu.Lock()
	defer mu.Unlock()
	g, err := s.st.Group(ctx, gid)
	if err == nil {
		return s.existing(ctx, actor, g)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return View{}, s.internal(ctx, "group", err)
	}
	last, err := s.st.LastSeq(ctx, chat.GroupChatID(gid))
	if err != nil {
		return View{}, s.internal(ctx, "last seq", err)
	}
	if last > 0 {
		return View{}, &chat.Error{Code: chat.CodeNotFound, Message: "the group " + gid + " made by this request was deleted"}
	}
	return s.create(ctx, actor, gid, name, members)
}

// existing answers a repeated CreateWithID. A first attempt that stored the
// group but failed before its chat recorded the creation (a chat-list entry
// or the system message) is finished here; the caller holds gid's lock, so
// two attempts never both record it.
func (s *Service) existing(ctx context.Context, actor string, g store.Group) (View, error) {
	if g.CreatedBy != actor {
		return View{}, conflict("group id " + g.ID + " is taken")
	}
	ms, err := s.st.Members(ctx, g.ID)
	if err != nil {
		return View{}, s.internal(ctx, "members", err)
	}
	if _, ok := find(ms, actor); !ok {
		return View{}, notFound(g.ID) // the creator has left since
	}
	last, err := s.st.LastSeq(ctx, chat.GroupChatID(g.ID))
	if err != nil {
		return View{}, s.internal(ctx, "last seq", err)
	}
	if last == 0 {
		all := userIDs(ms)
		if err := s.join(ctx, g.ID, all, s.opts.Now().UTC().Truncate(time.Millisecond)); err != nil {
			return View{}, err
		}
		seq := s.record(ctx, g.ID, system{Op: "created", By: actor, Name: g.Name, Users: all}, all)
		s.announce(all, Event{Op: "created", GroupID: g.ID, By: actor, Seq: seq, Name: g.Name, Users: all})
	}
	return view(g, ms), nil
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func (s *Service) create(ctx context.Context, actor, gid, name string, members []string) (View, error) {
	name, err := cleanName(name)
	if err != nil {
		return View{}, err
	}
	uids, err := s.checkUsers(ctx, members, actor)
	var invite []string
	if err == nil {
		uids, invite, err = s.screen(ctx, actor, uids)
	}
	if err != nil {
		return View{}, err
	}
	if len(uids)+1 > s.opts.MaxMembers {
		return View{}, conflict(fmt.Sprintf("a group has at most %d members", s.opts.MaxMembers))
	}
	now := s.opts.Now().UTC().Truncate(time.Millisecond)
	g := store.Group{ID: gid, Name: name, CreatedBy: actor, CreatedAt: now}
	ms := []store.Member{{GroupID: g.ID, UserID: actor, Role: store.RoleOwner, JoinedAt: now}}
	for _, u := range uids {
		ms = append(ms, store.Member{GroupID: g.ID, UserID: u, Role: store.RoleMember, JoinedAt: now})
	}
	err = s.st.CreateGroup(ctx, g, ms)
	all := userIDs(ms)
	s.opts.Membership.MembersChanged(g.ID, all)
	if err != nil {
		return View{}, s.internal(ctx, "create group", err)
	}
	if err := s.join(ctx, g.ID, all, now); err != nil {
		return View{}, err
	}
	seq := s.record(ctx, g.ID, system{Op: "created", By: actor, Name: name, Users: all}, all)
	s.announce(all, Event{Op: "created", GroupID: g.ID, By: actor, Seq: seq, Name: name, Users: all})
	if err := s.invite(ctx, actor, g, invite); err != nil {
		return View{}, err
	}
	return view(g, ms), nil
}

// Get returns a group to one of its members.
func (s *Service) Get(ctx context.Context, actor, gid string) (View, error) {
	g, ms, _, err := s.load(ctx, actor, gid)
	if err != nil {
		return View{}, err
	}
	return view(g, ms), nil
}

// Rename changes the name (owner or admin).
func (s *Service) Rename(ctx context.Context, actor, gid, name string) (View, error) {
	if err := s.admit(actor); err != nil {
		return View{}, err
	}
	name, err := cleanName(name)
	if err != nil {
		return View{}, err
	}
	g, ms, me, err := s.load(ctx, actor, gid)
	if err != nil {
		return View{}, err
	}
	if me.Role == store.RoleMember {
		return View{}, forbidden("only the owner or an admin may rename the group")
	}
	if err := s.st.RenameGroup(ctx, gid, name); err != nil {
		return View{}, s.storeErr(ctx, gid, "rename group", err)
	}
	g.Name = name
	all := userIDs(ms)
	seq := s.record(ctx, gid, system{Op: "renamed", By: actor, Name: name}, all)
	s.announce(all, Event{Op: "renamed", GroupID: gid, By: actor, Seq: seq, Name: name})
	return view(g, ms), nil
}

// Delete removes the group (owner only). Its history stays readable to
// nobody: members lose access with their membership.
func (s *Service) Delete(ctx context.Context, actor, gid string) error {
	if err := s.admit(actor); err != nil {
		return err
	}
	_, ms, me, err := s.load(ctx, actor, gid)
	if err != nil {
		return err
	}
	if me.Role != store.RoleOwner {
		return forbidden("only the owner may delete the group")
	}
	all := userIDs(ms)
	// Recorded first, while the members can still receive it.
	seq := s.record(ctx, gid, system{Op: "deleted", By: actor}, all)
	err = s.st.DeleteGroup(ctx, gid)
	s.opts.Membership.GroupDeleted(gid)
	if err != nil {
		return s.storeErr(ctx, gid, "delete group", err)
	}
	s.leave(ctx, gid, all)
	s.announce(all, Event{Op: "deleted", GroupID: gid, By: actor, Seq: seq})
	return nil
}

// AddMembers adds users (owner or admin). Users already in the group are
// left as they are, so retries are harmless. With consent on, users who
// share no accepted chat with actor are invited instead (screen).
func (s *Service) AddMembers(ctx context.Context, actor, gid string, users []string) (View, error) {
	if err := s.admit(actor); err != nil {
		return View{}, err
	}
	g, ms, me, err := s.load(ctx, actor, gid)
	if err != nil {
		return View{}, err
	}
	// Checked before the users so that a plain member learns nothing about
	// who exists; checked again below against the members as written.
	if err := mayAdd(me); err != nil {
		return View{}, err
	}
	uids, err := s.checkUsers(ctx, users, "")
	if err != nil {
		return View{}, err
	}
	current := userIDs(ms)
	var fresh []string
	for _, u := range uids {
		if !slices.Contains(current, u) {
			fresh = append(fresh, u)
		}
	}
	direct, invite, err := s.screen(ctx, actor, fresh)
	if err != nil {
		return View{}, err
	}
	if err := s.invite(ctx, actor, g, invite); err != nil {
		return View{}, err
	}
	return s.addMembers(ctx, actor, g, direct, func(cur []store.Member) error {
		me, ok := find(cur, actor)
		if !ok {
			return notFound(gid)
		}
		return mayAdd(me)
	})
}

// addMembers writes users into g on behalf of actor, deciding on the
// members as written (allowed, if set, vetoes the change): users already
// in are left alone and the member limit holds under any concurrency.
// Then the new members join, and the change is recorded and announced.
func (s *Service) addMembers(ctx context.Context, actor string, g store.Group, users []string, allowed func([]store.Member) error) (View, error) {
	gid := g.ID
	now := s.opts.Now().UTC().Truncate(time.Millisecond)
	var (
		added []string
		ms    []store.Member
	)
	err := s.st.UpdateMembers(ctx, gid, func(cur []store.Member) (store.MemberChange, error) {
		added, ms = nil, cur
		if allowed != nil {
			if err := allowed(cur); err != nil {
				return store.MemberChange{}, err
			}
		}
		current := userIDs(cur)
		var put []store.Member
		for _, u := range users {
			if !slices.Contains(current, u) {
				added = append(added, u)
				put = append(put, store.Member{GroupID: gid, UserID: u, Role: store.RoleMember, JoinedAt: now})
			}
		}
		if len(cur)+len(added) > s.opts.MaxMembers {
			added = nil
			return store.MemberChange{}, conflict(fmt.Sprintf("a group has at most %d members; it has %d", s.opts.MaxMembers, len(cur)))
		}
		ms = append(slices.Clone(cur), put...)
		slices.SortFunc(ms, func(a, b store.Member) int { return strings.Compare(a.UserID, b.UserID) })
		return store.MemberChange{Put: put}, nil
	})
	if len(added) > 0 {
		s.opts.Membership.MembersChanged(gid, added)
	}
	if err != nil {
		return View{}, s.updateErr(ctx, gid, "add members", err)
	}
	if len(added) == 0 {
		return view(g, ms), nil
	}
	if err := s.join(ctx, gid, added, now); err != nil {
		return View{}, err
	}
	all := userIDs(ms)
	seq := s.record(ctx, gid, system{Op: "members_added", By: actor, Users: added}, all)
	s.announce(all, Event{Op: "members_added", GroupID: gid, By: actor, Seq: seq, Users: added})
	return view(g, ms), nil
}

func mayAdd(me store.Member) error {
	if me.Role == store.RoleMember {
		return forbidden("only the owner or an admin may add members")
	}
	return nil
}

// RemoveMember removes uid: the owner may remove anyone else, an admin may
// remove members, and anyone but the owner may remove themselves (leave).
func (s *Service) RemoveMember(ctx context.Context, actor, gid, uid string) error {
	if err := s.admit(actor); err != nil {
		return err
	}
	if _, _, _, err := s.load(ctx, actor, gid); err != nil {
		return err
	}
	var (
		op  string
		all []string
	)
	err := s.st.UpdateMembers(ctx, gid, func(cur []store.Member) (store.MemberChange, error) {
		me, ok := find(cur, actor)
		if !ok {
			return store.MemberChange{}, notFound(gid)
		}
		target, ok := find(cur, uid)
		if !ok {
			return store.MemberChange{}, &chat.Error{Code: chat.CodeNotFound, Message: uid + " is not a member of this group"}
		}
		op = "member_removed"
		switch {
		case uid == actor && me.Role == store.RoleOwner:
			return store.MemberChange{}, conflict("the owner cannot leave: make another member owner first, or delete the group")
		case uid == actor:
			op = "member_left"
		case me.Role == store.RoleOwner:
		case me.Role == store.RoleAdmin && target.Role == store.RoleMember:
		default:
			return store.MemberChange{}, forbidden("not allowed to remove this member")
		}
		all = userIDs(cur)
		return store.MemberChange{Remove: []string{uid}}, nil
	})
	if all != nil {
		s.opts.Membership.MembersChanged(gid, []string{uid})
	}
	if err != nil {
		return s.updateErr(ctx, gid, "remove member", err)
	}
	s.leave(ctx, gid, []string{uid})
	// The removed user is told too, so its devices drop the group.
	seq := s.record(ctx, gid, system{Op: op, By: actor, Users: []string{uid}}, all)
	s.announce(all, Event{Op: op, GroupID: gid, By: actor, Seq: seq, Users: []string{uid}})
	return nil
}

// SetRole changes a member's role (owner only). Making someone owner hands
// the group over: the previous owner becomes an admin. The check that actor
// is the owner and the write happen as one step, so two racing hand-overs
// leave one owner.
func (s *Service) SetRole(ctx context.Context, actor, gid, uid string, role store.Role) (View, error) {
	if err := s.admit(actor); err != nil {
		return View{}, err
	}
	if role != store.RoleOwner && role != store.RoleAdmin && role != store.RoleMember {
		return View{}, invalid(`role must be "owner", "admin" or "member"`)
	}
	g, _, _, err := s.load(ctx, actor, gid)
	if err != nil {
		return View{}, err
	}
	var ms []store.Member
	err = s.st.UpdateMembers(ctx, gid, func(cur []store.Member) (store.MemberChange, error) {
		me, ok := find(cur, actor)
		if !ok {
			return store.MemberChange{}, notFound(gid)
		}
		if me.Role != store.RoleOwner {
			return store.MemberChange{}, forbidden("only the owner may change roles")
		}
		target, ok := find(cur, uid)
		if !ok {
			return store.MemberChange{}, &chat.Error{Code: chat.CodeNotFound, Message: uid + " is not a member of this group"}
		}
		if uid == actor {
			return store.MemberChange{}, conflict("the owner's role changes only by making another member owner")
		}
		changes := []store.Member{{GroupID: gid, UserID: uid, Role: role, JoinedAt: target.JoinedAt}}
		if role == store.RoleOwner {
			changes = append(changes, store.Member{GroupID: gid, UserID: actor, Role: store.RoleAdmin, JoinedAt: me.JoinedAt})
		}
		ms = slices.Clone(cur)
		for _, c := range changes {
			for i := range ms {
				if ms[i].UserID == c.UserID {
					ms[i].Role = c.Role
				}
			}
		}
		return store.MemberChange{Put: changes}, nil
	})
	if err != nil {
		return View{}, s.updateErr(ctx, gid, "set role", err)
	}
	all := userIDs(ms)
	seq := s.record(ctx, gid, system{Op: "role_changed", By: actor, Users: []string{uid}, Role: string(role)}, all)
	s.announce(all, Event{Op: "role_changed", GroupID: gid, By: actor, Seq: seq, Users: []string{uid}, Role: string(role)})
	return view(g, ms), nil
}

// Mine lists the groups actor belongs to, by group id, after `after`.
func (s *Service) Mine(ctx context.Context, actor, after string, limit int) ([]View, error) {
	if limit <= 0 || limit > 200 {
		return nil, invalid("limit must be 1 to 200")
	}
	mine, err := s.st.GroupsOf(ctx, actor, after, limit)
	if err != nil {
		return nil, s.internal(ctx, "groups of", err)
	}
	// Two reads for the whole page, not two per group.
	gids := make([]string, len(mine))
	for i, m := range mine {
		gids[i] = m.GroupID
	}
	groups, err := s.st.GroupsByID(ctx, gids)
	if err != nil {
		return nil, s.internal(ctx, "groups", err)
	}
	members, err := s.st.MembersOfGroups(ctx, gids)
	if err != nil {
		return nil, s.internal(ctx, "members", err)
	}
	out := make([]View, 0, len(mine))
	for _, gid := range gids {
		g, ok := groups[gid]
		if !ok {
			continue // deleted between the reads
		}
		out = append(out, view(g, members[gid]))
	}
	return out, nil
}

// load returns the group, its members and actor's membership; a group
// actor is not in looks the same as one that does not exist.
func (s *Service) load(ctx context.Context, actor, gid string) (store.Group, []store.Member, store.Member, error) {
	if !ids.ValidUserID(gid) {
		return store.Group{}, nil, store.Member{}, notFound(gid)
	}
	me, err := s.st.Member(ctx, gid, actor)
	if err != nil {
		return store.Group{}, nil, store.Member{}, s.storeErr(ctx, gid, "member", err)
	}
	g, err := s.st.Group(ctx, gid)
	if err != nil {
		return store.Group{}, nil, store.Member{}, s.storeErr(ctx, gid, "group", err)
	}
	ms, err := s.st.Members(ctx, gid)
	if err != nil {
		return store.Group{}, nil, store.Member{}, s.internal(ctx, "members", err)
	}
	return g, ms, me, nil
}

// updateErr maps an UpdateMembers failure: a rule its decision refused
// goes back as it is, anything else as storeErr does.
func (s *Service) updateErr(ctx context.Context, gid, op string, err error) error {
	if ce, ok := errors.AsType[*chat.Error](err); ok {
		return ce
	}
	return s.storeErr(ctx, gid, op, err)
}

func (s *Service) storeErr(ctx context.Context, gid, op string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return notFound(gid)
	}
	return s.internal(ctx, op, err)
}

// errUnknownUsers is the one answer for a member list naming anyone who is
// not a user. It names nobody and comes after every id was looked up, so
// the answer to [candidate, unknown] is the same whether or not candidate
// exists: a request that changes nothing reveals nothing.
var errUnknownUsers = &chat.Error{Code: chat.CodeUnknownRecipient, Message: "one or more of the user ids name no user; nobody was added"}

// checkUsers dedupes ids, drops self, and checks that all exist, with one
// store read whatever the answer.
func (s *Service) checkUsers(ctx context.Context, users []string, self string) ([]string, error) {
	var out []string
	malformed := false
	for _, u := range users {
		if u == self || slices.Contains(out, u) {
			continue
		}
		if !ids.ValidUserID(u) {
			malformed = true
		}
		out = append(out, u)
		if len(out) > s.opts.MaxMembers {
			return nil, conflict(fmt.Sprintf("a group has at most %d members", s.opts.MaxMembers))
		}
	}
	if malformed {
		return nil, errUnknownUsers // says nothing about the well-formed ids
	}
	if len(out) == 0 {
		return nil, nil
	}
	found, err := s.st.UsersByID(ctx, out)
	if err != nil {
		return nil, s.internal(ctx, "users", err)
	}
	if len(found) != len(out) {
		return nil, errUnknownUsers
	}
	for _, u := range found {
		if u.Deleted() {
			return nil, errUnknownUsers // a deleted account is answered as no account
		}
	}
	return out, nil
}

func (s *Service) join(ctx context.Context, gid string, uids []string, at time.Time) error {
	for _, u := range uids {
		if err := s.st.JoinChat(ctx, u, chat.GroupChatID(gid), at); err != nil {
			return s.internal(ctx, "join chat", err)
		}
	}
	return nil
}

// leave marks the chat as left in uids' lists. The membership is already
// gone, which is what access checks use, so a failure here only leaves a
// stale chat-list entry: logged, not returned.
func (s *Service) leave(ctx context.Context, gid string, uids []string) {
	now := s.opts.Now()
	for _, u := range uids {
		if err := s.st.LeaveChat(ctx, u, chat.GroupChatID(gid), now); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.opts.Logger.Error("leave chat", "group", gid, "user", u, "error", err)
		}
	}
}

// record writes the change into the group's chat. The change itself is
// already stored; if recording fails the members still converge through the
// group's state, so the failure is logged and the change stands.
func (s *Service) record(ctx context.Context, gid string, body system, recipients []string) uint64 {
	raw, err := json.Marshal(body)
	if err == nil {
		var m store.Message
		m, err = s.chats.SendSystem(ctx, gid, body.By, raw, recipients)
		if err == nil {
			return m.Seq
		}
	}
	s.opts.Logger.Error("record group change", "group", gid, "op", body.Op, "error", err)
	return 0
}

func (s *Service) announce(uids []string, ev Event) {
	ev.Type = "group"
	for _, u := range uids {
		s.events.Event(u, ev)
	}
}

func userIDs(ms []store.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.UserID
	}
	return out
}

func find(ms []store.Member, uid string) (store.Member, bool) {
	for _, m := range ms {
		if m.UserID == uid {
			return m, true
		}
	}
	return store.Member{}, false
}

func view(g store.Group, ms []store.Member) View {
	v := View{GroupID: g.ID, Chat: chat.GroupChatID(g.ID), Name: g.Name, CreatedBy: g.CreatedBy, CreatedAt: g.CreatedAt, Members: make([]MemberView, len(ms))}
	for i, m := range ms {
		v.Members[i] = MemberView{UserID: m.UserID, Role: m.Role, JoinedAt: m.JoinedAt}
	}
	return v
}
