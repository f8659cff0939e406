package pebble

import (
	"context"
	"sync"

	"github.com/cockroachdb/pebble"
)

// stripes is a fixed set of mutexes picked by key: writers of the same key
// always share a mutex, writers of different keys usually do not.
type stripes [64]sync.Mutex

// of returns the mutex guarding key.
func (l *stripes) of(key string) *sync.Mutex { return &l[l.slot(key)] }

// slot is the index of key's mutex (FNV-1a, inlined to avoid allocating);
// taking several mutexes in slot order never deadlocks.
func (l *stripes) slot(key string) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(len(l)))
}

// commit makes b durable unless ctx died first: after Commit the write has
// happened, so that is the last point at which a cancelled caller can still
// be told nothing changed.
func commit(ctx context.Context, b *pebble.Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// commitLazy is commit without the fsync, for writes whose loss in a machine
// crash costs nothing but a repeat (cursor moves).
func commitLazy(ctx context.Context, b *pebble.Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.Commit(pebble.NoSync)
}
