package chat

import (
	"context"

	"github.com/mqchat/mqchat/store"
)

// PageQuery is a client's history request, the same over REST and MQTT.
// Forward pages with After (After 0 = from the first message); otherwise the
// page is the newest messages below Before (0 = no bound).
type PageQuery struct {
	Forward bool
	After   uint64
	Before  uint64
	Limit   int
}

// Page is a page of a chat as clients see it.
type Page struct {
	Messages []Delivered `json:"messages"`
	// Next is the seq to pass again as the same parameter (after, or before)
	// for the following page; nil when this page was not full, so there is
	// nothing more in that direction. A full last page costs one empty page.
	Next *uint64 `json:"next"`
	// FirstSeq is the chat's oldest seq still stored: retention purges
	// what is older, so paging back stops there.
	FirstSeq uint64 `json:"first_seq"`
}

// HistoryPage returns a page of a chat uid may read.
func (s *Service) HistoryPage(ctx context.Context, uid, chat string, q PageQuery) (Page, error) {
	if q.Forward && q.Before != 0 {
		return Page{}, Invalid("before", "use either after or before, not both")
	}
	// The access check first: it also refuses a string that is no chat id
	// before any store sees it.
	if err := s.CanRead(ctx, uid, chat); err != nil {
		return Page{}, err
	}
	// Read before the page: a purge between the two reads only makes
	// first stale by what it purged.
	first, err := s.st.FirstSeq(ctx, chat)
	if err != nil {
		return Page{}, s.storeError(ctx, "first seq", err)
	}
	hq := store.HistoryQuery{After: q.After, Before: q.Before, Limit: q.Limit}
	if q.Forward && q.After < first-1 && s.opts.Archive == nil {
		// Purged seqs are gone: start at the first one stored. (With an
		// archive they are read back from it: History completes the page.)
		hq.After = first - 1
	}
	if q.Forward && hq.After == 0 {
		// Seqs are gap-free from 1: the oldest page is the newest below limit+1.
		hq.Before = uint64(q.Limit) + 1
	}
	msgs, err := s.History(ctx, uid, chat, hq)
	if err != nil {
		return Page{}, err
	}
	page := Page{FirstSeq: first}
	if len(msgs) == q.Limit {
		next := msgs[0].Seq
		if q.Forward {
			next = msgs[len(msgs)-1].Seq
		}
		// Paging back ends at the first stored seq, or with an archive
		// (which holds what was purged) at seq 1.
		floor := first
		if s.opts.Archive != nil {
			floor = 1
		}
		if q.Forward || next > floor {
			page.Next = &next
		}
	}
	if msgs, err = s.hideBlocked(ctx, uid, chat, msgs); err != nil {
		return Page{}, err
	}
	page.Messages = make([]Delivered, len(msgs))
	for i, m := range msgs {
		page.Messages[i] = ViewFor(m, uid)
	}
	if err := s.addPreviews(ctx, chat, msgs, page.Messages); err != nil {
		return Page{}, err
	}
	return page, nil
}
