package broker

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqchat/mqchat/internal/metrics"
)

// TestRestoredSessionsHeldToLimits: sessions persisted with more, or
// longer, filters than the limits allow come back trimmed to them, the
// filters KeepFirst picks first; what was dropped is counted and deleted
// from the store, so the next start has nothing to drop.
func TestRestoredSessionsHeldToLimits(t *testing.T) {
	dir := t.TempDir()
	expiry := uint32(3600)
	persistent := func(id string) *paho.Connect {
		return &paho.Connect{ClientID: id, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	}
	b1 := startBroker(t, Options{SessionDir: dir})
	big, _ := connectV5(t, dialTCP(t, b1.Addrs().TCP), persistent("big"))
	var bigFilters []string
	for i := range 12 {
		bigFilters = append(bigFilters, fmt.Sprintf("a/%02d", i))
	}
	bigFilters = append(bigFilters, "z/mine") // sorts last in the store
	for _, f := range bigFilters {
		big.subscribe(t, f)
	}
	small, _ := connectV5(t, dialTCP(t, b1.Addrs().TCP), persistent("small"))
	long := "b/" + strings.Repeat("x", 100)
	small.subscribe(t, "b/short")
	small.subscribe(t, long)
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}

	restart := func() (*Broker, float64) {
		reg := prometheus.NewRegistry()
		m := metrics.NewLimits(reg, LimitRestoredSubscriptions)
		b := startBroker(t, Options{
			SessionDir: dir, MaxSubscriptions: 5, MaxFilterBytes: 64, Limits: m,
			KeepFirst: func(_, filter string) bool { return strings.HasPrefix(filter, "z/") },
		})
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
			t.Fatalf("gather: %v %v", mfs, err)
		}
		return b, mfs[0].GetMetric()[0].GetCounter().GetValue()
	}
	filters := func(b *Broker, id string) []string {
		cl, ok := b.Server().Clients.Get(id)
		if !ok {
			t.Fatalf("session %s not restored", id)
		}
		var out []string
		for f := range cl.State.Subscriptions.GetAll() {
			out = append(out, f)
		}
		slices.Sort(out)
		return out
	}

	b2, dropped := restart()
	if want := float64(len(bigFilters) - 5 + 1); dropped != want {
		t.Errorf("dropped %v filters, want %v", dropped, want)
	}
	wantBig := []string{"a/00", "a/01", "a/02", "a/03", "z/mine"}
	if got := filters(b2, "big"); !slices.Equal(got, wantBig) {
		t.Errorf("big restored with %v, want %v", got, wantBig)
	}
	if got := filters(b2, "small"); !slices.Equal(got, []string{"b/short"}) {
		t.Errorf("small restored with %v, want [b/short]", got)
	}
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}

	b3, dropped := restart()
	if dropped != 0 {
		t.Errorf("the next start dropped %v filters: the first did not delete them", dropped)
	}
	if got := filters(b3, "big"); !slices.Equal(got, wantBig) {
		t.Errorf("big restored again with %v, want %v", got, wantBig)
	}
}
