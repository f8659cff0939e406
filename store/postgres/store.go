// Package postgres is the PostgreSQL backend of store.Store (pgx/v5 with a
// connection pool). It serves every aggregate; deployments with Cassandra
// use it for users, groups and devices only (see store/compose).
//
// The schema lives in migrations/postgres and is applied by chatd migrate
// (internal/migrate), never by Open. Every query goes through pgx's
// per-connection statement cache, so each is parsed and planned once per
// connection. Operations that touch several rows run in one transaction or
// one statement; no call issues a query per row.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mqchat/mqchat/store"
)

// Options tunes a Store; the zero value is usable.
type Options struct {
	Logger *slog.Logger
	// SweepInterval is how often expired dedupe records are deleted;
	// 0 means 10 minutes, a negative value disables the sweeper.
	SweepInterval time.Duration
	// Now is the clock used for the dedupe window (tests move it).
	Now func() time.Time
}

// Store is a store.Store on a PostgreSQL database.
type Store struct {
	pool      *pgxpool.Pool
	log       *slog.Logger
	now       func() time.Time
	stopSweep context.CancelFunc
	sweepDone chan struct{}
	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to the database named by dsn (a postgres:// URL or a
// keyword/value string; pool settings such as pool_max_conns go in it too)
// and checks that it answers.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse dsn: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	s := &Store{pool: pool, log: opts.Logger, now: opts.Now, sweepDone: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	every := opts.SweepInterval
	if every == 0 {
		every = 10 * time.Minute
	}
	sweepCtx, cancel := context.WithCancel(context.Background())
	s.stopSweep = cancel
	if every > 0 {
		go s.sweepLoop(sweepCtx, every)
	} else {
		close(s.sweepDone)
	}
	return s, nil
}

// Ping checks that a connection can be acquired and answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close stops the sweeper and closes every connection; it is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.stopSweep()
		<-s.sweepDone
		s.pool.Close()
	})
	return nil
}

// Pool exposes the connection pool to tests of this package's users.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// mapErr turns driver errors into the store's sentinels and keeps a dead
// context's error visible to errors.Is.
func mapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		return fmt.Errorf("%w: %s", store.ErrConflict, pgErr.ConstraintName)
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// ms is the precision the store keeps (store.Message: "times are kept to
// the millisecond"), applied on the way in so every backend agrees.
func ms(t time.Time) time.Time { return t.Truncate(time.Millisecond) }

// seqArg converts an unsigned seq or cursor for a bigint column.
func seqArg(v uint64) (int64, error) {
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("postgres: value %d does not fit a bigint", v)
	}
	return int64(v), nil
}

// clampSeq bounds a query limit to the bigint range; seqs never exceed it.
func clampSeq(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, fn)
}
