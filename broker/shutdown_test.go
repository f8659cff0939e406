package broker

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// TestCloseWhileClientsLeave closes the broker while clients disconnect at
// the same moment; Close must always return. mochi's own shutdown path can
// deadlock here (its client map's read lock is taken twice while a leaving
// client waits for the write lock), seen once in the e2e suite; the window
// is nanoseconds wide, so this test guards the path rather than reliably
// reproducing that race.
func TestCloseWhileClientsLeave(t *testing.T) {
	for round := 0; round < 20; round++ {
		b := startBroker(t, Options{})
		const n = 40
		conns := make([]*paho.Client, n)
		for i := range conns {
			conn, err := net.Dial("tcp", b.Addrs().TCP)
			if err != nil {
				t.Fatal(err)
			}
			c := paho.NewClient(paho.ClientConfig{Conn: conn})
			if _, err := c.Connect(testCtx(t), &paho.Connect{ClientID: fmt.Sprintf("c%d", i), KeepAlive: 30, CleanStart: true}); err != nil {
				t.Fatalf("connect: %v", err)
			}
			conns[i] = c
		}
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func() { defer wg.Done(); _ = c.Disconnect(&paho.Disconnect{}) }()
		}
		closed := make(chan error, 1)
		go func() { closed <- b.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatalf("round %d: Close: %v", round, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Close hung while clients disconnected", round)
		}
		wg.Wait()
	}
}
