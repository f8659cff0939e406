package pebble

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"

	"github.com/mqchat/mqchat/internal/pebblelog"
	"github.com/mqchat/mqchat/store"
)

// ErrClosed is returned by every call made after Close.
var ErrClosed = errors.New("pebble: store closed")

const (
	defaultSweepInterval = time.Hour
	// Pebble reserves its memtables (up to two in use) out of the block
	// cache, so the cache must exceed 2 × memTableSize by what the blocks
	// need: with a cache the memtables fill, every dedupe miss reads its
	// bloom filters back from disk.
	cacheSize = 128 << 20
	// Every message is written once under its chat's key and never again,
	// so what it costs beyond its WAL write is compaction: with pebble's
	// default 4 MB memtables, L0 files are small and each L0→Lbase
	// compaction rewrites most of Lbase, about a fifth of the CPU of a
	// saturated node. 32 MB memtables cut that several times over.
	memTableSize = 32 << 20
	// walSyncInterval is the least time between two WAL fsyncs. A commit
	// that comes sooner waits for the next one: at a few thousand messages
	// a second each commit held one or two messages and paid an fsync
	// (about 70 µs of kernel CPU here) alone; waiting at most this long
	// lets several share it. A PUBACK still waits for the fsync of its
	// message, and a commit after a quiet spell syncs at once.
	walSyncInterval = time.Millisecond
)

// Options tunes Open. The zero value is ready for production.
type Options struct {
	// Logger receives pebble's own events (at debug, problems at warn and
	// error) and the sweeper's reports. Nil discards them.
	Logger *slog.Logger
	// Now is the clock the dedupe window is measured against; nil means
	// time.Now. Tests move it to expire records without sleeping.
	Now func() time.Time
	// SweepInterval is how often expired dedupe records are deleted;
	// 0 means one hour.
	SweepInterval time.Duration
}

// Store is the pebble-backed store.Store. It is safe for concurrent use.
type Store struct {
	db  *pebble.DB
	log *slog.Logger
	now func() time.Time

	// mu is held shared by every operation and exclusively by Close: pebble
	// panics when used after Close, and callers may race shutdown.
	mu     sync.RWMutex
	closed bool

	// userMu makes CreateUser's uniqueness check and its write one step.
	userMu sync.Mutex

	// groupLocks serialise the writes of one group (by group id) and
	// cursorLocks those of one user's chat list (by user id), so each
	// read-check-write is one step without making unrelated writers queue
	// behind each other's fsync.
	groupLocks  stripes
	cursorLocks stripes
	// changeLocks serialise, by chat id, the batches that change stored
	// messages (edits, deletes, reactions) from reading a target to
	// committing it; batches of plain messages never take them.
	changeLocks stripes

	// ceilings spare most appends the read that proves their seqs free.
	ceilings seqCeilings

	// dedupeMu is held shared by appends and exclusively by the sweeper while
	// it deletes, so the sweeper never removes a record that an append has
	// just replaced after reading the old one as expired.
	dedupeMu sync.RWMutex

	// inflight holds the message and dedupe keys of the appends between
	// their checks and the end of their commits (see AppendMessages);
	// appendMu guards it and is never held across a store read or write.
	appendMu sync.Mutex
	inflight map[string]struct{}

	// devicesMu serialises device writes: moving a token touches two owners.
	devicesMu sync.Mutex
	// blocksMu makes PutBlock's and PutRequest's keep-the-first check and
	// their write one step.
	blocksMu sync.Mutex

	// sessionMu serialises session writes, which makes a rotation's
	// compare-and-set one step.
	sessionMu sync.Mutex

	// e2eDeviceLocks serialise the end-to-end writes of one device (keys,
	// one-time prekey claims, mailbox) by "{uid}\x00{device}", which makes
	// each claim and each seq assignment one step; e2eSenderLocks, taken
	// before them, do the same for a sender's device-message dedupe records.
	e2eDeviceLocks stripes
	// attachLocks serialise the read-modify-writes of one attachment
	// record (references) and of one user's daily upload counter.
	attachLocks    stripes
	e2eSenderLocks stripes

	stopSweep context.CancelFunc
	sweepDone chan struct{}
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store in dir and starts its dedupe
// sweeper. Close releases both.
func Open(dir string, opts Options) (*Store, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "store/pebble")
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	every := opts.SweepInterval
	if every <= 0 {
		every = defaultSweepInterval
	}

	// The DB takes its own reference to the cache; ours ends with Open.
	cache := pebble.NewCache(cacheSize)
	defer cache.Unref()

	po := &pebble.Options{
		Cache:              cache,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebblelog.Logger{L: logger},
		EventListener:      pebblelog.EventListener(logger),
		MemTableSize:       memTableSize,
		WALMinSyncInterval: func() time.Duration { return walSyncInterval },
	}
	// Without filters every point Get (users, dedupe) would probe each level's
	// index; bloom filters make the common miss nearly free.
	po.Levels = make([]pebble.LevelOptions, 7)
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		po.Levels[i].FilterType = pebble.TableFilter
	}

	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("pebble: open %s: %w", dir, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		db:        db,
		log:       logger,
		now:       now,
		stopSweep: cancel,
		sweepDone: make(chan struct{}),
		inflight:  make(map[string]struct{}),
	}
	go s.sweepLoop(ctx, every)
	return s, nil
}

// begin admits an operation: it fails fast on a dead context and, on
// success, holds s.mu shared until the caller's deferred s.mu.RUnlock.
func (s *Store) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// Ping reads one key, which exercises the read path without touching data.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.begin(ctx); err != nil {
		return fmt.Errorf("pebble: ping: %w", err)
	}
	defer s.mu.RUnlock()
	_, closer, err := s.db.Get([]byte("ping"))
	if err == nil {
		return closer.Close()
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("pebble: ping: %w", err)
	}
	return nil
}

// Close stops the sweeper, flushes the memtable so the next Open need not
// replay the WAL, and closes the DB. Later calls return nil.
func (s *Store) Close() error {
	s.stopSweep()
	<-s.sweepDone

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if err := s.db.Flush(); err != nil {
		errs = append(errs, fmt.Errorf("pebble: flush: %w", err))
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("pebble: close: %w", err))
	}
	return errors.Join(errs...)
}

// Checkpoint writes a consistent copy of the store into dir, which must not
// exist, while the store keeps serving. The WAL is flushed first, so every
// write acknowledged before the call is in the copy; tables are hard-linked
// where the file system allows.
func (s *Store) Checkpoint(ctx context.Context, dir string) error {
	if err := s.begin(ctx); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	if err := s.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("pebble: checkpoint %s: %w", dir, err)
	}
	return nil
}
