package client

import (
	"context"
	"sync"
)

// queue hands values to an application channel without ever making the
// MQTT goroutine wait for the application: what the application has not
// read yet waits here.
type queue[T any] struct {
	mu     sync.Mutex
	items  []T
	signal chan struct{}
	out    chan T
}

func newQueue[T any]() *queue[T] {
	return &queue[T]{signal: make(chan struct{}, 1), out: make(chan T)}
}

func (q *queue[T]) push(v T) {
	q.mu.Lock()
	q.items = append(q.items, v)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// run feeds out until ctx ends, then closes it.
func (q *queue[T]) run(ctx context.Context) {
	defer close(q.out)
	for {
		q.mu.Lock()
		if len(q.items) == 0 {
			q.mu.Unlock()
			select {
			case <-q.signal:
				continue
			case <-ctx.Done():
				return
			}
		}
		v := q.items[0]
		var zero T
		q.items[0] = zero
		q.items = q.items[1:]
		q.mu.Unlock()
		select {
		case q.out <- v:
		case <-ctx.Done():
			return
		}
	}
}
