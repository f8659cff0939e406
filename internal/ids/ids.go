// Package ids makes the identifiers chatd hands out: user ids that are safe
// inside MQTT topics and time-ordered 64-bit message ids unique across nodes.
package ids

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// epoch keeps 41 bits of milliseconds good until 2093.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	nodeBits = 10
	seqBits  = 12
	maxNode  = 1<<nodeBits - 1
	maxSeq   = 1<<seqBits - 1
)

// Generator makes snowflake-style ids: 41 bits of milliseconds, 10 bits of
// node id, 12 bits of sequence. It never waits: when the clock stalls, goes
// backwards or a millisecond's sequence runs out, it borrows the next
// millisecond, so ids stay strictly increasing per node.
type Generator struct {
	mu     sync.Mutex
	node   uint64
	lastMs int64
	seq    uint64
	now    func() time.Time
}

// NewGenerator returns a generator for node (0..1023).
func NewGenerator(node int) (*Generator, error) {
	if node < 0 || node > maxNode {
		return nil, fmt.Errorf("ids: node id %d out of range 0..%d", node, maxNode)
	}
	return &Generator{node: uint64(node), now: time.Now}, nil
}

// SetNode changes the node number, for a cluster node whose number was
// claimed by another node while it was away. Ids stay unique: the new
// number's previous holder is gone.
func (g *Generator) SetNode(node int) error {
	if node < 0 || node > maxNode {
		return fmt.Errorf("ids: node id %d out of range 0..%d", node, maxNode)
	}
	g.mu.Lock()
	g.node = uint64(node)
	g.mu.Unlock()
	return nil
}

// Next returns the next id.
func (g *Generator) Next() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := g.now().Sub(epoch).Milliseconds()
	switch {
	case ms > g.lastMs:
		g.lastMs, g.seq = ms, 0
	case g.seq < maxSeq:
		g.seq++
	default:
		g.lastMs, g.seq = g.lastMs+1, 0
	}
	return uint64(g.lastMs)<<(nodeBits+seqBits) | g.node<<seqBits | g.seq
}

// Time returns the moment encoded in id.
func Time(id uint64) time.Time {
	return epoch.Add(time.Duration(id>>(nodeBits+seqBits)) * time.Millisecond)
}

// Format renders a message id as 16 lower-case hex digits, which sort like
// the numbers they encode.
func Format(id uint64) string {
	s := strconv.FormatUint(id, 16)
	const zeros = "0000000000000000"
	return zeros[:16-len(s)] + s
}

// Parse is the inverse of Format.
func Parse(s string) (uint64, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("ids: %q is not a 16-digit message id", s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("ids: parse %q: %w", s, err)
	}
	return v, nil
}

// NewUserID returns a fresh user (or group) id: 20 characters of [0-9a-v],
// so it never contains the MQTT separators / + # nor the ':' of chat ids.
// All 100 bits come from crypto/rand: ids are handed to other users, and an
// id that follows from the previous one (as time-ordered xids do) would let
// anyone list every account. Ids made before were xids, which have the same
// shape, so ValidUserID accepts both.
func NewUserID() string {
	var b [13]byte // 104 bits; the 20 base32 characters keep the first 100
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand.Read never fails on supported platforms (Go 1.24+).
		panic("ids: crypto/rand: " + err.Error())
	}
	return userIDEncoding.EncodeToString(b[:])[:20]
}

// userIDEncoding is the alphabet of xids (base32hex, lower case), so new
// ids and old ones look alike.
var userIDEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// ValidUserID reports whether s has the shape of an id made by NewUserID.
func ValidUserID(s string) bool {
	if len(s) != 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'v') {
			return false
		}
	}
	return true
}

// MaxDeviceID is the longest device id, in bytes.
const MaxDeviceID = 64

// ValidDeviceID is the one rule for device ids, wherever one arrives: the
// device part of an MQTT client id ({uid}/{device}) and the REST device
// registry, so every device that can connect can also register for push.
// 1 to MaxDeviceID printable ASCII characters, none of them '/' (which
// would make client ids ambiguous) or an MQTT wildcard.
func ValidDeviceID(id string) bool {
	if id == "" || len(id) > MaxDeviceID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f || c == '+' || c == '#' || c == '/' {
			return false
		}
	}
	return true
}
