package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// shardLabel labels the series of one shard of a leased consumer. With
// consumerLabel it bounds the cardinality to the consumers and their shard
// counts.
const shardLabel = "shard"

var (
	leaseShardsOwned = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reflex_lease_shards_owned",
		Help: "Number of shard leases of a consumer held by this process.",
	}, []string{consumerLabel})

	leaseClaims = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_lease_claims_total",
		Help: "Number of shard leases of a consumer claimed by this process.",
	}, []string{consumerLabel, shardLabel})

	leaseLosses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_lease_losses_total",
		Help: "Number of shard leases of a consumer that this process lost without releasing them: taken by another member, expired, refused to a fenced write, or stopped locally before they could expire.",
	}, []string{consumerLabel, shardLabel})

	leaseRebalances = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "reflex_lease_rebalances_total",
		Help: "Number of shard leases of a consumer that this process released for another member to take (its fair share shrank).",
	}, []string{consumerLabel})

	leaseEpoch = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "reflex_lease_epoch",
		Help: "Epoch (fencing token) of the shard lease of a consumer held by this process; 0 while it holds none.",
	}, []string{consumerLabel, shardLabel})
)

func init() {
	prometheus.MustRegister(leaseShardsOwned, leaseClaims, leaseLosses, leaseRebalances, leaseEpoch)
}

// LeaseShardsOwned returns the reflex_lease_shards_owned series of the
// consumer named name. Runners add and subtract, so that several runners
// of one name in a process add up.
func LeaseShardsOwned(name string) prometheus.Gauge {
	return leaseShardsOwned.WithLabelValues(name)
}

// LeaseClaimed counts a claim of shard of the consumer named name and sets
// its epoch gauge.
func LeaseClaimed(name string, shard int, epoch int64) {
	s := strconv.Itoa(shard)
	leaseClaims.WithLabelValues(name, s).Inc()
	leaseEpoch.WithLabelValues(name, s).Set(float64(epoch))
}

// LeaseClaims returns the reflex_lease_claims_total series of shard of the
// consumer named name.
func LeaseClaims(name string, shard int) prometheus.Counter {
	return leaseClaims.WithLabelValues(name, strconv.Itoa(shard))
}

// LeaseLost counts the loss of the lease of shard of the consumer named
// name.
func LeaseLost(name string, shard int) {
	leaseLosses.WithLabelValues(name, strconv.Itoa(shard)).Inc()
}

// LeaseEnded sets the epoch gauge of shard of the consumer named name to
// 0: this process no longer holds it.
func LeaseEnded(name string, shard int) {
	leaseEpoch.WithLabelValues(name, strconv.Itoa(shard)).Set(0)
}

// LeaseRebalances returns the reflex_lease_rebalances_total series of the
// consumer named name.
func LeaseRebalances(name string) prometheus.Counter {
	return leaseRebalances.WithLabelValues(name)
}
