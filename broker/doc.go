// Package broker embeds the mochi-mqtt server that chatd's clients connect
// to over TCP, TLS and WebSocket, and that the chat services publish through
// (mochi's inline client is always enabled).
//
// The broker is built from plain Options so that it has no dependency on the
// config package; the limits it sets are deliberate rather than mochi's
// defaults, for these reasons:
//
//   - MaximumClientWritesPending is the capacity of a per-connection
//     channel that mochi allocates up front when the connection is accepted,
//     at 8 bytes a slot. The default of 8192 costs 64 KiB per connection
//     before a single message is sent, which dominates memory with many idle
//     chat clients. A chat client that falls that far behind is better
//     disconnected and resynced than buffered. (chatd's default of 1000
//     fits an 8 KiB allocation with the channel's header.)
//
//   - MaximumInflight caps the QoS 1 messages held per session, connected or
//     not. Past the cap mochi drops the message silently (it only bumps a
//     $SYS counter and logs a warning), and it likewise drops when the write
//     channel above is full. MQTT delivery is therefore best effort: the chat
//     store plus the sync protocol is the delivery guarantee, and the broker
//     only needs enough inflight room to cover a short disconnect.
//
//   - ReceiveMaximum bounds the unacknowledged QoS publishes a client may
//     send us at once; mochi disconnects clients that exceed it.
//
//   - The session expiry bounds how long mochi keeps an offline session, its
//     subscriptions and its inflight messages. mochi's default is
//     math.MaxUint32 seconds, i.e. forever, which lets abandoned devices
//     accumulate state without limit. Clients asking for longer are clamped
//     in CONNACK.
//
//   - MaximumMessageExpiryInterval is left at mochi's default (one day); the
//     chat store, not retained or queued MQTT messages, holds history.
//
//   - TopicAliasMaximum bounds the topic aliases one connection registers;
//     mochi keeps each with its topic for the life of the connection, and
//     its default of 65535 lets one client hold gigabytes of topic names.
//     (mochi does not announce it in CONNACK; the hooks package does.)
//
//   - Restored sessions are held to the subscription limits live ones are
//     held to by the hooks package (MaxSubscriptions, MaxFilterBytes): see
//     restore.go. Sessions persist for days and are restored on every
//     start, so whatever a session was allowed to store once would
//     otherwise cost memory and start-up time on every start after.
//
// Sessions are persisted with mochi's Pebble storage hook rather than the
// bolt or redis hooks because those do not store an inflight message's
// packet id, so inflight messages restored after a restart all collide on
// id 0. Pebble runs in NoSync mode: sessions are an optimisation that saves
// clients a resubscribe after a restart, and losing the last few writes in
// a crash costs only that.
//
// mochi's own WebSocket listener accepts any path, any Origin and clients
// that do not speak the mqtt subprotocol, so the broker uses its own
// listener (see websocket.go) that checks all three before upgrading.
//
// mochi v2.7.9 reads a topic node's retained path without its lock while
// scanning for a wildcard SUBSCRIBE's retained messages; the retain gate
// (retaingate.go) serialises those scans against every retained write, and
// the broker publishes $SYS itself (systopics.go) because mochi's own
// ticker writes retained messages with no hook around it.
//
// Every listener is wrapped (see guard.go) because mochi sets no deadline
// on a connection until its CONNECT has been read and its Close ignores
// such connections: a silent client would hold goroutines forever and
// make Close hang waiting for it.
package broker
