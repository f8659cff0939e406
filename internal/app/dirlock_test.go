package app

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqchat/mqchat/internal/config"
)

func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	first, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("first lock: %v", err)
	}
	_, err = lockDataDir(dir)
	if !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("second lock while held: %v, want ErrDataDirInUse", err)
	}
	for _, want := range []string{dir, filepath.Join(dir, adminSocketName), fmt.Sprintf("pid %d", os.Getpid()), "no server answers"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("refusal is not one line: %q", err)
	}
	// A server answering on the socket is named as such.
	ln, err := net.Listen("unix", filepath.Join(dir, adminSocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := lockDataDir(dir); err == nil || !strings.Contains(err.Error(), "running chatd server") {
		t.Errorf("lock with an answering admin socket: %v, want it to name the running server", err)
	}
	if err := first.release(); err != nil {
		t.Fatal(err)
	}
	again, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	if err := again.release(); err != nil {
		t.Fatal(err)
	}
}

func TestPreflightPorts(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := busy.Addr().String()
	_, takenPort, _ := net.SplitHostPort(taken)
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	shared := free()
	tests := []struct {
		name   string
		set    func(c *config.Config)
		want   []string // in the error; none: no error
		reject []string // not in the error
	}{
		{"all free or port 0", func(c *config.Config) { c.HTTP.Addr = free() }, nil, nil},
		{"taken mqtt port", func(c *config.Config) { c.MQTT.Addr = taken },
			[]string{"mqtt.addr", takenPort, "already in use"}, []string{"http.addr"}},
		{"taken metrics port", func(c *config.Config) { c.HTTP.MetricsAddr = taken },
			[]string{"http.metrics_addr", takenPort}, nil},
		{"two keys, one port", func(c *config.Config) { c.HTTP.Addr, c.MQTT.WSAddr = shared, shared },
			[]string{"mqtt.ws_addr", "http.addr", "also"}, nil},
		{"every taken key named", func(c *config.Config) { c.MQTT.Addr, c.HTTP.Addr = taken, taken },
			[]string{"mqtt.addr", "http.addr"}, nil},
		{"pprof on the metrics listener is one listener", func(c *config.Config) {
			a := free()
			c.HTTP.MetricsAddr, c.HTTP.PprofAddr = a, a
		}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			c.DataDir = filepath.Join(t.TempDir(), "data")
			c.MQTT.Addr, c.MQTT.WSAddr, c.HTTP.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
			tt.set(&c)
			err := Preflight(c)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Preflight: %v", err)
				}
				return
			}
			if err == nil || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Preflight = %v, want a one-line error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
			for _, w := range tt.reject {
				if strings.Contains(err.Error(), w) {
					t.Errorf("%q names %q, which is free", err, w)
				}
			}
			if _, err := os.Stat(c.DataDir); !os.IsNotExist(err) {
				t.Errorf("Preflight created the data dir (stat: %v)", err)
			}
		})
	}
}
