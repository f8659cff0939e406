// Package cassandra is the Cassandra backend for the message side of
// store.Store: the message log, dedupe records and per-user chat lists
// with cursors (compose.MessageLog). Users, groups and devices stay in a
// relational backend; store/compose joins the two.
//
// # Schema (migrations/cassandra)
//
// messages is partitioned by (chat_id, bucket) with bucket = seq / 4096 and
// clustered by seq, so no partition grows past 4096 messages and a history
// page reads one or two partitions in clustering order. chat_buckets lists
// a chat's buckets newest first, which is how LastSeq finds the newest
// partition without scanning. chat_states holds each user's chat list in
// one partition. dedupe rows carry a TTL ending with their 24 h window.
//
// # Gap-free, single-writer seq
//
// Cassandra assigns nothing: seq comes from the chat's single writer
// (services/chat's writer goroutine, one per chat on one node), which keeps
// the counter in memory and, on start or after any failed append, recovers
// it with LastSeq: the first row of chat_buckets names the newest bucket
// and the last row of that bucket is the last stored seq. AppendMessages
// writes each chat's messages one after another in seq order and stops a
// chat at its first failure, so what is stored is always a prefix 1..n and
// the recovered counter continues without a gap. Each message goes in one
// LOGGED batch with its dedupe record and its bucket row: the three are
// applied all or none.
//
// A write that times out may still be applied later; the writer then reads
// a LastSeq that does not include it and may reuse its seq. Every write
// carries the client's timestamp (gocql's DefaultTimestamp, kept on), and
// Cassandra keeps the cell with the newest timestamp, not the last to
// arrive: the acknowledged later message keeps the row. The late write's
// dedupe record still lands, so LookupDedupe only honours a record whose
// message still holds the seq; the sender, which got no PUBACK for the lost
// write, retries with its cmid and is stored anew.
package cassandra

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gocql/gocql"

	"github.com/mqchat/mqchat/store"
)

// Config says how to reach the cluster.
type Config struct {
	Hosts       []string
	Keyspace    string
	Consistency string // e.g. LOCAL_QUORUM (the default when empty)
	LocalDC     string // prefer this data centre's nodes; empty = none
	Username    string
	Password    string
	Timeout     time.Duration // per request; 0 = 10s
}

// NewCluster builds the driver configuration: token-aware routing (each
// request goes to a replica of its partition) over round robin, or over
// DC-aware round robin when LocalDC is set. keyspace may be empty for
// sessions that create it.
func NewCluster(c Config, keyspace string) (*gocql.ClusterConfig, error) {
	cons := gocql.LocalQuorum
	if c.Consistency != "" {
		var err error
		if cons, err = gocql.ParseConsistencyWrapper(strings.ToUpper(c.Consistency)); err != nil {
			return nil, fmt.Errorf("cassandra: consistency: %w", err)
		}
	}
	cl := gocql.NewCluster(c.Hosts...)
	cl.Keyspace = keyspace
	cl.Consistency = cons
	cl.SerialConsistency = gocql.LocalSerial
	cl.Timeout = c.Timeout
	if cl.Timeout == 0 {
		cl.Timeout = 10 * time.Second
	}
	cl.ConnectTimeout = cl.Timeout
	fallback := gocql.RoundRobinHostPolicy()
	if c.LocalDC != "" {
		fallback = gocql.DCAwareRoundRobinPolicy(c.LocalDC)
	}
	cl.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(fallback)
	// Last-write-wins by client time is what keeps a late, timed-out append
	// from overwriting an acknowledged message (see the package comment).
	cl.DefaultTimestamp = true
	if c.Username != "" {
		cl.Authenticator = gocql.PasswordAuthenticator{Username: c.Username, Password: c.Password}
	}
	return cl, nil
}

// Store is the Cassandra message log. gocql prepares every statement once
// per connection and caches it, so the constant CQL strings below are
// prepared statements.
type Store struct {
	s    *gocql.Session
	cons gocql.Consistency
	now  func() time.Time
}

// Options tunes a Store; the zero value is usable.
type Options struct {
	Now func() time.Time // clock for the dedupe window
}

// Open connects to the keyspace (migrated beforehand, see internal/migrate).
func Open(c Config, opts Options) (*Store, error) {
	cl, err := NewCluster(c, c.Keyspace)
	if err != nil {
		return nil, err
	}
	sess, err := cl.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("cassandra: connect: %w", err)
	}
	s := &Store{s: sess, cons: cl.Consistency, now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Ping reads the coordinator's own row, a query every node can answer.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.s.Query(`SELECT release_version FROM system.local`).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("cassandra: ping: %w", ctxErr(ctx, err))
	}
	return nil
}

// Close closes the session; it is idempotent.
func (s *Store) Close() error {
	s.s.Close()
	return nil
}

// Session exposes the session to tests.
func (s *Store) Session() *gocql.Session { return s.s }

// ctxErr keeps a dead context's error visible to errors.Is and maps the
// driver's not-found.
func ctxErr(ctx context.Context, err error) error {
	if errors.Is(err, gocql.ErrNotFound) {
		return store.ErrNotFound
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}
