//go:build unix

package main

import "syscall"

// Everything chatd creates (the store's WAL and tables, MQTT sessions, the
// JWT secret, the admin socket) is for its own user only. Pebble creates
// its files 0666 less the umask, so the umask is what keeps message
// plaintext from other local users; the data dir's existing entries are
// tightened by the app at start-up.
func init() { syscall.Umask(0o077) }
