package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// connectionsScenario holds C idle, subscribed connections and reports the
// server's resident memory per connection. The connections are bare MQTT
// sessions (paho's packet codec over a socket, no client goroutines) so the
// load generator's own memory stays small at tens of thousands of them.
func connectionsScenario(ctx context.Context, o options, log *slog.Logger, stderr io.Writer) (report, error) {
	pid, err := serverPID(o)
	if err != nil {
		return report{}, fmt.Errorf("find the server process (pass --server-pid): %w", err)
	}
	var ids []identity
	if !o.Plain {
		users, err := newREST(o.HTTP).registerMany(ctx, o.Prefix, min(o.Users, o.Conns))
		if err != nil {
			return report{}, err
		}
		for i := range o.Conns {
			u := users[i%len(users)]
			ids = append(ids, identity{ClientID: fmt.Sprintf("%s/c%d", u.ID, i), Username: u.ID, Password: u.Token, Subs: []string{"users/" + u.ID + "/inbox"}})
		}
	} else {
		for i := range o.Conns {
			ids = append(ids, identity{ClientID: fmt.Sprintf("%s-c%d", o.Prefix, i), Subs: []string{fmt.Sprintf("bench/%s/c%d", o.Prefix, i)}})
		}
	}
	base, err := readRSS(pid)
	if err != nil {
		return report{}, err
	}
	var c counters
	stop := make(chan struct{})
	go progress(stderr, &c, stop)
	defer close(stop)

	d := newDialer(o.Sources)
	conns := make([]net.Conn, len(ids))
	defer func() {
		for _, cn := range conns {
			if cn != nil {
				_ = cn.Close()
			}
		}
	}()
	log.Info("connecting", "connections", o.Conns, "sources", o.Sources, "server_pid", pid)
	start := time.Now()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range ids {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cn, err := rawSession(ctx, d, o.MQTT, ids[i])
			if err != nil {
				if c.errors.Add(1) <= 3 {
					log.Warn("connection failed", "error", err)
				}
				return
			}
			conns[i] = cn
			c.connections.Add(1)
		}()
	}
	wg.Wait()
	log.Info("holding", "connections", c.connections.Load(), "connect_time", time.Since(start).Round(time.Millisecond), "hold", o.Hold)
	select {
	case <-time.After(o.Hold):
	case <-ctx.Done():
	}
	rss, err := readRSS(pid)
	if err != nil {
		return report{}, err
	}
	n := c.connections.Load()
	r := report{
		Scenario: "connections", Target: o.TargetName, Params: map[string]any{"connections": o.Conns, "hold": o.Hold.String(), "sources": o.Sources},
		Errors: c.errors.Load(), Connections: n, BaselineRSS: base, RSS: rss,
		ElapsedSec: time.Since(start).Seconds(),
	}
	if n > 0 {
		r.BytesPerConn = float64(rss-base) / float64(n)
	}
	return r, nil
}

// rawSession opens one MQTT 5 session and subscribes it, then leaves it idle.
func rawSession(ctx context.Context, d *dialer, addr string, id identity) (net.Conn, error) {
	cn, _, err := rawConnect(ctx, d, addr, id, nil)
	if err != nil {
		return nil, err
	}
	if len(id.Subs) > 0 {
		refused, code, err := rawSubscribe(cn, 1, id.Subs)
		if err == nil && refused > 0 {
			err = &refusedError{what: "subscribe", code: code}
		}
		if err != nil {
			_ = cn.Close()
			return nil, fmt.Errorf("%s: %w", id.ClientID, err)
		}
	}
	return cn, nil
}

// readRSS returns VmRSS of pid in bytes.
func readRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("server memory: %w", err)
	}
	defer f.Close()
	return parseVmRSS(f)
}

func parseVmRSS(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected VmRSS line %q", sc.Text())
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb * 1024, err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS line")
}

// listenerPID finds the process with a listening TCP socket on port, via
// /proc/net/tcp{,6} and the processes' fd links.
func listenerPID(port string) (int, error) {
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q: %w", port, err)
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" {
				continue
			}
			if _, hexPort, ok := strings.Cut(fs[1], ":"); ok && hexPort == fmt.Sprintf("%04X", p) {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("nothing listens on port %s", port)
	}
	links, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, l := range links {
		if t, err := os.Readlink(l); err == nil && inodes[t] {
			return strconv.Atoi(strings.Split(l, "/")[2])
		}
	}
	return 0, fmt.Errorf("no visible process owns the listener on port %s", port)
}

// readCPU returns the user+system CPU time pid has used so far.
func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of process %d: %w", pid, err)
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15, in clock ticks of
// 1/100 s on Linux) from a /proc/PID/stat line; the command name may hold
// spaces, so fields are counted after its closing parenthesis.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed cpu fields in /proc stat")
	}
	return time.Duration(u+s) * 10 * time.Millisecond, nil
}

// serverPID is --server-pid or the process listening on addr's port.
func serverPID(o options) (int, error) {
	if o.ServerPID != 0 {
		return o.ServerPID, nil
	}
	_, port, err := net.SplitHostPort(o.MQTT)
	if err != nil {
		return 0, err
	}
	return listenerPID(port)
}
