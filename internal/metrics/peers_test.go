package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestPeerLabelsBounded(t *testing.T) {
	l := &labeler{max: 2, names: map[string]struct{}{}}
	for _, tc := range []struct{ name, want string }{
		{"", UnnamedPeer}, {"a", "a"}, {"b", "b"}, {"c", OverflowPeer}, {"a", "a"}, {"d", OverflowPeer}, {"", UnnamedPeer},
	} {
		if got := l.label(tc.name); got != tc.want {
			t.Errorf("label(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestPeerStreamClose(t *testing.T) {
	name := uniqueName(t)
	p := OpenPeerStream(name, func() (int64, bool) { return 7, true })
	p.Sent(3, 30)
	p.SendError()
	if got := gatherPeer(t, "reflex_server_peer_lag_events")[name]; got != 7 {
		t.Errorf("lag = %v, want 7", got)
	}
	p.Close()
	p.Close() // idempotent
	if got := gatherPeer(t, "reflex_server_peer_streams")[name]; got != 0 {
		t.Errorf("streams = %v after Close, want 0", got)
	}
	if _, ok := gatherPeer(t, "reflex_server_peer_lag_events")[name]; ok {
		t.Error("lag series still there after Close")
	}
	if got := gatherPeer(t, "reflex_server_peer_events_sent_total")[name]; got != 3 {
		t.Errorf("events sent = %v, want 3", got)
	}
}

func gatherPeer(t *testing.T, family string) map[string]float64 {
	t.Helper()
	return gather(t, prometheus.DefaultGatherer, family)
}
