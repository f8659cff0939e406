package cassandra

import (
	"context"
	"fmt"
	"sync"

	"github.com/mqchat/mqchat/store"
)

// lastMessagesParallel bounds the reads one chat list puts in flight.
const lastMessagesParallel = 16

// LastMessages reads each chat's newest message concurrently: Cassandra
// has no cross-partition query that would do it in one, and each chat is
// two single-partition reads (its newest bucket, that bucket's last row),
// so a chat list costs about two round trips whatever its length.
func (s *Store) LastMessages(ctx context.Context, chats []string) (map[string]store.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cassandra: last messages: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		out      = make(map[string]store.Message, len(chats))
		firstErr error
		wg       sync.WaitGroup
		slots    = make(chan struct{}, lastMessagesParallel)
	)
	for _, chat := range chats {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			last, err := s.History(ctx, chat, store.HistoryQuery{Limit: 1})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil && firstErr == nil:
				firstErr = err
				cancel()
			case err == nil && len(last) == 1:
				last[0].Reactions = nil // as on every backend: a chat list shows none
				out[chat] = last[0]
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("cassandra: last messages: %w", firstErr)
	}
	return out, nil
}
