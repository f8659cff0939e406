// Package client is a Go client for chatd: one device of one user, over
// MQTT 5 or 3.1.1 (TCP or WebSocket), with REST only to log in.
//
// Dial logs in, connects and subscribes to the user's inbox and events.
// From then on the client keeps itself connected: when the connection
// drops it redials with a growing, jittered pause, logs in again if its
// token was refused, and catches up from the server's store, so that
//
//   - Messages delivers every chat message stored after Dial (or after
//     Options.Since) exactly once per (chat, seq) and in seq order within
//     each chat, whether it arrived live or was fetched after a reconnect
//     or a gap. A chat that begins while the client is away is delivered
//     from its first message.
//   - Send (and SendMessage) returns only once the server has stored the
//     message, with its chat and seq. It publishes with one cmid, again
//     after each reconnect or retryable refusal (rate limits, a busy
//     server), until the server acknowledges it; the server stores a cmid
//     once, so a retry never makes a second message.
//   - Edit, Delete, React and Unreact change an earlier message; each
//     change is a message of its own (Message.Change says what it did),
//     sent and retried like any other.
//   - Group operations retry with one op id the same way.
//
// Events carries everything else: receipts, typing notices, presence of
// watched users, group changes, errors not tied to a call, and the
// client's own "connected" and "disconnected".
//
// Read both channels: the client never makes its connection wait for the
// application, so what is not read is held in memory.
//
// The client starts every MQTT session clean: the store, not the broker's
// offline queue, is what it relies on (the protocol's advice). An
// application that keeps its messages across restarts saves Seen() and
// passes it back as Options.Since to resume exactly where it stopped.
//
// examples/iot-sensor in the repository is a device that sends readings
// to a group over MQTT 3.1.1 and reconnects forever.
package client
