package e2ekeys

import (
	"context"
	"fmt"
	"time"

	"github.com/mqchat/mqchat/services/chat"
)

// groupsPage is how many memberships one store read of the audience takes.
const groupsPage = 200

// audienceTimeout bounds computing and publishing one key change notice;
// the change itself is stored by then.
const audienceTimeout = 10 * time.Second

// announce tells everyone who shares a chat with uid, and uid's own
// devices, that uid's device changed. The change is stored already: the
// request's cancellation must not lose the notice, and a store failure
// here is logged (the clients' next device list shows the change).
func (s *Service) announce(uid, deviceID, change string) {
	if s.events == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), audienceTimeout)
	defer cancel()
	users, err := s.audience(ctx, uid)
	if err != nil {
		s.opts.Logger.Error("key change audience", "user", uid, "device", deviceID, "change", change, "error", err)
	}
	ev := KeysChangedEvent{Type: "device_keys_changed", User: uid, Device: deviceID, Change: change}
	s.events.Event(uid, ev)
	for _, u := range users {
		s.events.Event(u, ev)
	}
}

// audience returns the users other than uid who share a chat with it: the
// other member of each 1:1 chat in uid's list that has a message, and every
// co-member of uid's groups; minus those uid blocks, who see uid as having
// no devices at all. On an error it returns what it found so far.
func (s *Service) audience(ctx context.Context, uid string) ([]string, error) {
	seen := map[string]bool{uid: true}
	var out []string
	add := func(u string) error {
		if seen[u] {
			return nil
		}
		seen[u] = true
		if s.blocks != nil {
			blocked, err := s.blocks.Blocked(ctx, uid, u)
			if err != nil {
				return fmt.Errorf("blocks: %w", err)
			}
			if blocked {
				return nil
			}
		}
		out = append(out, u)
		return nil
	}

	states, err := s.st.ChatStates(ctx, uid)
	if err != nil {
		return out, fmt.Errorf("chat states: %w", err)
	}
	var direct []string
	for _, st := range states {
		if _, _, ok := chat.DirectMembers(st.Chat); ok {
			direct = append(direct, st.Chat)
		}
	}
	if len(direct) > 0 {
		// A 1:1 chat without a message is no relation yet (the same rule
		// as presence).
		last, err := s.st.LastMessages(ctx, direct)
		if err != nil {
			return out, fmt.Errorf("last messages: %w", err)
		}
		for _, c := range direct {
			if _, ok := last[c]; !ok {
				continue
			}
			a, b, _ := chat.DirectMembers(c)
			other := a
			if a == uid {
				other = b
			}
			if err := add(other); err != nil {
				return out, err
			}
		}
	}

	after := ""
	for {
		ms, err := s.st.GroupsOf(ctx, uid, after, groupsPage)
		if err != nil {
			return out, fmt.Errorf("groups of: %w", err)
		}
		if len(ms) == 0 {
			return out, nil
		}
		gids := make([]string, len(ms))
		for i, m := range ms {
			gids[i] = m.GroupID
		}
		members, err := s.st.MembersOfGroups(ctx, gids)
		if err != nil {
			return out, fmt.Errorf("members of groups: %w", err)
		}
		for _, gid := range gids {
			for _, m := range members[gid] {
				if err := add(m.UserID); err != nil {
					return out, err
				}
			}
		}
		if len(ms) < groupsPage {
			return out, nil
		}
		after = gids[len(gids)-1]
	}
}
