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
// writes each chat's messages in seq order and stops a chat at its first
// failure, so what is stored is always a prefix 1..n and the recovered
// counter continues without a gap.
//
// # The store is the fence
//
// In a cluster two nodes may both believe they write a chat for a moment
// (an owner that lost its membership and has not noticed yet). Every write
// that could let one of them overwrite or duplicate the other's is a
// lightweight transaction (Paxos), so the loser gets store.ErrConflict:
//
//   - messages: INSERT … IF NOT EXISTS, all the messages of one (chat,
//     bucket) partition in one conditional batch, applied all or none, one
//     Paxos round for the batch rather than one per message;
//   - dedupe records: INSERT … IF NOT EXISTS, each in a partition of its own
//     so each is its own Paxos round, written before the messages. A record
//     that still counts refuses the chat before any of its messages exists;
//     when the message batch then finds a taken seq, the records just
//     written are deleted again (DELETE … IF id = ours). Messages are never
//     deleted: another writer may already have continued after them.
//
// A conditional write that times out has an unknown outcome: a Paxos
// proposal that reached some replicas is completed by the next round on its
// partition. The next writer of that seq runs that round with its own IF NOT
// EXISTS, so it either sees the late message (conflict, reload LastSeq, use
// the next seq) or the message is gone for good; an acknowledged message is
// never overwritten. The dedupe records of such an append stay; LookupDedupe
// honours a record only once its message is stored, and a record whose
// message is still missing after takeoverAge may be replaced by a new
// writer of its (sender, cmid).
//
// The price is round trips: a plain write is one, a Paxos round is four
// (prepare, read, propose, commit) at LOCAL_SERIAL, so a batch costs one
// round per chat partition plus one per message with a cmid (run in
// parallel), and writes to one partition contend with each other.
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
	// Client timestamps order the plain writes (chat lists, cursors, bucket
	// rows) as the client issued them; messages and dedupe records are
	// conditional writes, ordered by Paxos instead (see the package comment).
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
