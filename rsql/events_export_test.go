package rsql

import (
	"context"
	"database/sql"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Hooks and internals for the tests of the events side of package rsql
// (the external tests in package rsql_test see these too).

// SetQueryHook sets a function called before every load ("load") and head
// watcher poll ("poll") with the quoted table name; nil removes it.
func SetQueryHook(f func(table, kind string)) {
	if f == nil {
		testHookQuery.Store(nil)
		return
	}
	testHookQuery.Store(&f)
}

// SetPollerHook sets a function called with +1 and -1 when a head watcher
// poller goroutine starts and exits; nil removes it.
func SetPollerHook(f func(delta int)) {
	if f == nil {
		testHookPoller.Store(nil)
		return
	}
	testHookPoller.Store(&f)
}

// SetBeforeWaitHook sets a function a stream calls after finding nothing
// to load and before waiting; nil removes it.
func SetBeforeWaitHook(f func()) {
	if f == nil {
		testHookBeforeWait.Store(nil)
		return
	}
	testHookBeforeWait.Store(&f)
}

// SetFillCheckHook sets a function the gap filler calls after each check
// of a range; nil removes it.
func SetFillCheckHook(f func()) {
	if f == nil {
		testHookFillCheck.Store(nil)
		return
	}
	testHookFillCheck.Store(&f)
}

// SetGapConfirm sets how long the filler waits before filling an absent
// ID right after an uncommitted one, and returns a function restoring it.
func SetGapConfirm(d time.Duration) (restore func()) {
	old := testGapConfirm.Swap(int64(d))
	return func() { testGapConfirm.Store(old) }
}

// SetPollQueriedHook sets a function the head watcher's poller calls after
// each poll query returns; nil removes it.
func SetPollQueriedHook(f func()) {
	if f == nil {
		testHookPollQueried.Store(nil)
		return
	}
	testHookPollQueried.Store(&f)
}

// WatcherHead returns the head recorded by the table's watcher for db and
// whether streams may trust it; ok is false without a watcher.
func (t *EventsTable) WatcherHead(db *sql.DB) (head int64, known, ok bool) {
	watchRegistry.mu.Lock()
	defer watchRegistry.mu.Unlock()
	for k, w := range watchRegistry.m {
		if k.table == t.q.table && k.db == db {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.head, w.headKnown, true
		}
	}
	return 0, false, false
}

// Backoff returns the table's poll interval.
func (t *EventsTable) Backoff() time.Duration { return t.backoff }

// QuotedName returns the table name as it appears in SQL.
func (t *EventsTable) QuotedName() string { return t.q.table }

// SetCacheSize replaces the table's cache by an empty one of size events.
func (t *EventsTable) SetCacheSize(size int) { t.cache = newRCache(size, defaultCacheBytes, t.m) }

// CacheIDs returns the IDs of the cached events.
func (t *EventsTable) CacheIDs() []int64 {
	t.cache.mu.RLock()
	defer t.cache.mu.RUnlock()
	return append([]int64(nil), t.cache.ids...)
}

// ActiveWatchers returns the number of head watchers in the registry.
func ActiveWatchers() int {
	watchRegistry.mu.Lock()
	defer watchRegistry.mu.Unlock()
	return len(watchRegistry.m)
}

// SetMaxInsertSQL sets the statement size at which InsertMany starts a new
// statement and returns a function restoring it.
func SetMaxInsertSQL(n int) func() {
	old := maxInsertSQL
	maxInsertSQL = n
	return func() { maxInsertSQL = old }
}

// gaugeOrCounter returns the value of a gauge or counter.
func gaugeOrCounter(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if g := d.GetGauge(); g != nil {
		return g.GetValue()
	}
	return d.GetCounter().GetValue()
}

// SetPGConnectHook sets a function called before each connection attempt
// of a PostgreSQL notify connection (an error fails the attempt); nil
// removes it.
func SetPGConnectHook(f func(ctx context.Context) error) {
	if f == nil {
		testHookPGConnect.Store(nil)
		return
	}
	testHookPGConnect.Store(&f)
}

// SetPGNotifiedHook sets a function called with the channel after a
// notification from another session woke the watchers of a channel; nil
// removes it.
func SetPGNotifiedHook(f func(channel string)) {
	if f == nil {
		testHookPGNotified.Store(nil)
		return
	}
	testHookPGNotified.Store(&f)
}

// PGNotifyConn is the state of the notify connection of one database.
type PGNotifyConn struct {
	Database string
	PID      uint32 // backend PID, 0 while not connected
	Channels int    // channels listened on
	Running  bool   // the hub's goroutine runs
}

// PGNotifyConns returns the notify connections of the process.
func PGNotifyConns() []PGNotifyConn {
	pgHubs.mu.Lock()
	defer pgHubs.mu.Unlock()
	var out []PGNotifyConn
	for _, h := range pgHubs.m {
		h.mu.Lock()
		out = append(out, PGNotifyConn{Database: h.cfg.Database, PID: h.pid, Channels: h.channels, Running: h.running})
		h.mu.Unlock()
	}
	return out
}

// Channel returns the table's NOTIFY channel.
func (t *EventsTable) Channel() string { return t.channel }
