package app

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/mqchat/mqchat/internal/config"
)

// Preflight checks what most often stops a start, before the server logs
// anything or touches the data dir: that no other process holds the data
// dir, and that every configured port can be bound. Its error is one line
// naming the data dir, or each configuration key whose port is taken.
//
// The ports are bound and released again, so another process may still win
// one before New binds it; New then fails as it always did. This check is
// for the common case, someone else already on the port.
func Preflight(cfg config.Config) error {
	if _, err := os.Stat(cfg.DataDir); err == nil {
		// Only "held by another process" is this check's to report: a data
		// dir chatd may not write gets New's message, with the fix.
		l, err := lockDataDir(cfg.DataDir)
		if errors.Is(err, ErrDataDirInUse) {
			return err
		}
		_ = l.release()
	}
	return checkPorts(listenAddrs(cfg))
}

// keyAddr is one configured listening address and the key that sets it.
type keyAddr struct{ key, addr string }

func listenAddrs(cfg config.Config) []keyAddr {
	all := []keyAddr{
		{"mqtt.addr", cfg.MQTT.Addr},
		{"mqtt.tls_addr", cfg.MQTT.TLSAddr},
		{"mqtt.ws_addr", cfg.MQTT.WSAddr},
		{"http.addr", cfg.HTTP.Addr},
		{"http.metrics_addr", cfg.HTTP.MetricsAddr},
	}
	if cfg.HTTP.PprofAddr != cfg.HTTP.MetricsAddr { // then one listener serves both
		all = append(all, keyAddr{"http.pprof_addr", cfg.HTTP.PprofAddr})
	}
	out := all[:0]
	for _, ka := range all {
		// Port 0 takes whatever is free: nothing to check.
		if _, port, err := net.SplitHostPort(ka.addr); err == nil && port != "0" {
			out = append(out, ka)
		}
	}
	return out
}

// checkPorts binds every address at once, so two keys naming the same port
// are caught as well as a port another process holds, and reports every
// one that failed.
func checkPorts(addrs []keyAddr) error {
	var (
		problems []string
		held     []net.Listener
		holder   = map[string]string{} // port → key that bound it here
	)
	defer func() {
		for _, ln := range held {
			_ = ln.Close()
		}
	}()
	for _, ka := range addrs {
		_, port, _ := net.SplitHostPort(ka.addr)
		ln, err := net.Listen("tcp", ka.addr)
		if err == nil {
			held = append(held, ln)
			holder[port] = ka.key
			continue
		}
		switch {
		case errors.Is(err, syscall.EADDRINUSE) && holder[port] != "":
			problems = append(problems, fmt.Sprintf("%s %q: port %s is also %s's", ka.key, ka.addr, port, holder[port]))
		case errors.Is(err, syscall.EADDRINUSE):
			problems = append(problems, fmt.Sprintf("%s %q: port %s is already in use", ka.key, ka.addr, port))
		default:
			problems = append(problems, fmt.Sprintf("%s %q: %v", ka.key, ka.addr, err))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New("cannot listen: " + strings.Join(problems, "; "))
}
