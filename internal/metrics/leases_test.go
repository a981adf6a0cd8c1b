package metrics

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestLeaseSeries(t *testing.T) {
	name := uniqueName(t)
	LeaseClaimed(name, 3, 7)
	LeaseClaimed(name, 3, 8)
	LeaseLost(name, 3)
	LeaseRebalances(name).Inc()
	LeaseShardsOwned(name).Add(2)

	value := func(family string, labels map[string]string) float64 {
		t.Helper()
		mfs, err := prometheus.DefaultGatherer.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != family {
				continue
			}
		next:
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
						continue next
					}
				}
				if len(m.GetLabel()) != len(labels) {
					t.Fatalf("%s has labels %v, want %v", family, m.GetLabel(), labels)
				}
				return metricValue(m)
			}
		}
		t.Fatalf("no %s series with %v", family, labels)
		return 0
	}
	shard := map[string]string{consumerLabel: name, shardLabel: "3"}
	consumer := map[string]string{consumerLabel: name}
	for _, c := range []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"reflex_lease_claims_total", shard, 2},
		{"reflex_lease_epoch", shard, 8},
		{"reflex_lease_losses_total", shard, 1},
		{"reflex_lease_rebalances_total", consumer, 1},
		{"reflex_lease_shards_owned", consumer, 2},
	} {
		if got := value(c.family, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.family, c.labels, got, c.want)
		}
	}
	LeaseEnded(name, 3)
	if got := value("reflex_lease_epoch", shard); got != 0 {
		t.Errorf("epoch after the lease ended = %v, want 0", got)
	}
	for _, c := range []prometheus.Collector{leaseShardsOwned, leaseClaims, leaseLosses, leaseRebalances, leaseEpoch} {
		if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](prometheus.Register(c)); !ok {
			t.Errorf("lease collector %T not registered at init", c)
		}
	}
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	}
	return 0
}
