package rsql

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/seed-e488ba2e/reflex/internal/wait"
)

// Wake-ups across processes on PostgreSQL: LISTEN/NOTIFY on one dedicated
// connection per database per process, the notify connection, held by a
// pgHub.
//
// Sending: the NotifyFunc of an insert (called after the commit, outside
// the caller's transaction) asks the hub to NOTIFY the table's channel
// (pgChannel). The hub's goroutine sends the NOTIFYs asked for since its
// last send in one statement, its own transaction, one at a time, at
// least a millisecond apart, and a millisecond more per call the last
// one answered, up to 4 ms (pgSendGap): a call waits at most a
// millisecond more for its NOTIFY while calls are sparse, at most 4 ms
// when they come by thousands per second; a burst of inserts costs a few
// NOTIFYs, never one per event, and the server's cost is bounded
// whatever the insert rate (at most 250 NOTIFY transactions per second
// under a sustained rate of thousands of calls). Only the first call
// after a send wakes the goroutine. The connection commits with
// synchronous_commit off: a notification is lost in a crash anyway, so
// its commit need not wait for the WAL flush. NOTIFY in the caller's
// transaction (or from a trigger, which is the same) is not used by
// default: PostgreSQL serialises the commits of all transactions that
// notified on one global lock, so every writer's commit would queue
// behind every other's; the hub takes that lock in its own short
// transactions instead.
//
// Listeners: a NOTIFY nobody listens to still costs the server a
// transaction on that lock (a writer of thousands of events per second
// lost 6% of its throughput to them), so the hub sends a channel's
// NOTIFYs only while another session listens on it. A session listening
// on a channel holds the shared session-level advisory lock
// (pgListenLockKey, hashtext(channel)), taken in the statement that
// LISTENs; the hub looks for one (pg_try_advisory_xact_lock, which fails
// while another session holds it shared) before its first NOTIFY on a
// channel and then at most every pgPresenceTTL, in the transaction of a
// NOTIFY while it finds listeners. While it finds none, the channel's
// notify calls return at once, without waking the goroutine. A listener
// that appears is therefore woken by NOTIFYs at most pgPresenceTTL
// later; until then, as whenever the connection is down, its poll finds
// the rows.
//
// Listening: when a stream of a table first waits at the head, its head
// watcher registers with the hub, which LISTENs on the table's channel
// (and takes the channel's listener lock) and wakes the watcher (w.wake)
// on every notification from another session. Notifications from the hub's
// own session are ignored: the inserts of this process woke its streams
// already. Whenever the hub starts listening on a channel (first time or
// after reconnecting) it wakes that channel's watchers, so that their
// streams read again what committed before LISTEN took effect: the
// stream's first read and the LISTEN may come in either order without a
// missed event. The head watcher keeps polling at its interval regardless:
// it finds rows whose writer does not call its NotifyFunc (optional), and
// covers the time the connection is down.
//
// The connection is made with the configuration of a connection of the
// caller's pool (an insert's, through pgCapture, or a pooled connection of
// the stream's *sql.DB), application_name "reflex-notify". When it fails
// (the server restarts, an administrator ends it) the hub reconnects with
// a backoff of 100 ms doubling to 5 s, LISTENs again and wakes the
// watchers.
//
// Ownership: a hub is held (counted) by the EventsTables whose inserts
// notified through it or whose streams listen through it, until their
// Close; the Close of the last stops the goroutine and waits for it,
// after letting it send the NOTIFYs asked for (bounded by a second). The
// goroutine also closes the connection and exits by itself when no stream
// has listened and no insert notified for a minute, so that a table that
// is never closed leaves no connection behind; a later notify or listen
// starts it again.
//
// Locks: an EventsTable's hubsMu before the hub registry's lock before a
// hub's lock; a hub's lock is never held while taking a watcher's.

const (
	// pgHubIdle is how long the notify connection stays open without a
	// listening stream or a notify.
	pgHubIdle = time.Minute
	// pgReconnectMin and pgReconnectMax bound the backoff between failed
	// attempts to (re)connect.
	pgReconnectMin = 100 * time.Millisecond
	pgReconnectMax = 5 * time.Second
	// pgConnectTimeout bounds one connection attempt.
	pgConnectTimeout = 10 * time.Second
	// pgStopFlush bounds how long the last Close waits for the hub to
	// send the NOTIFYs asked for before it.
	pgStopFlush = time.Second
	// pgNotifyApp is the application_name of the notify connection.
	pgNotifyApp = "reflex-notify"
	// pgNotifyGap and pgNotifyGapMax bound the time between two NOTIFY
	// transactions of a notify connection (see pgSendGap).
	pgNotifyGap    = time.Millisecond
	pgNotifyGapMax = 4 * time.Millisecond
	// pgListenLockKey is the first key of the advisory lock a session
	// listening on a channel holds shared; the second is
	// hashtext(channel). "rflx" in ASCII.
	pgListenLockKey = 0x72666c78
)

// pgPresenceTTL is how long the hub trusts what it found of a channel's
// listeners (a variable for the tests).
var pgPresenceTTL = 250 * time.Millisecond

// pgConnInfo is what the hub needs of a connection of the caller's pool:
// the database's identity and the configuration to connect with.
type pgConnInfo struct {
	key string         // host, port, database and user
	cfg *pgconn.Config // a copy, never modified
}

// pgConnInfos caches the pgConnInfo of pgx connections, so that an insert
// does not copy its connection's configuration. Weak keys: the cache
// keeps no connection alive; it is emptied when full.
var pgConnInfos = struct {
	mu sync.Mutex // protects m
	m  map[weak.Pointer[pgconn.PgConn]]*pgConnInfo
}{m: make(map[weak.Pointer[pgconn.PgConn]]*pgConnInfo)}

// pgConnInfosMax bounds pgConnInfos: a few pools of connections.
const pgConnInfosMax = 1024

// pgConnInfoOf returns the pgConnInfo of conn.
func pgConnInfoOf(conn *pgx.Conn) *pgConnInfo {
	wp := weak.Make(conn.PgConn())
	pgConnInfos.mu.Lock()
	info := pgConnInfos.m[wp]
	pgConnInfos.mu.Unlock()
	if info != nil {
		return info
	}
	cfg := &conn.Config().Config // a copy
	// pgx sets the OnNotification of a connection's configuration to a
	// method of the connection: kept, it would keep every connection the
	// cache has seen alive, with its buffers and statement cache, after
	// its pool closed it. The notify connection sets its own handlers.
	cfg.OnNotification, cfg.OnNotice = nil, nil
	info = &pgConnInfo{key: fmt.Sprintf("%s:%d/%s?user=%s", cfg.Host, cfg.Port, cfg.Database, cfg.User), cfg: cfg}
	pgConnInfos.mu.Lock()
	if len(pgConnInfos.m) >= pgConnInfosMax {
		clear(pgConnInfos.m)
	}
	pgConnInfos.m[wp] = info
	pgConnInfos.mu.Unlock()
	return info
}

// pgHubs is the registry of hubs, one per database.
var pgHubs = struct {
	mu sync.Mutex // protects m
	m  map[string]*pgHub
}{m: make(map[string]*pgHub)}

// Test hooks.
var (
	// testHookPGConnect, if set, is called before each connection attempt
	// of a hub; an error fails the attempt.
	testHookPGConnect atomic.Pointer[func(ctx context.Context) error]
	// testHookPGNotified, if set, is called after a notification from
	// another session woke the watchers of its channel.
	testHookPGNotified atomic.Pointer[func(channel string)]
)

// pgHub is the notify connection of one database in the process.
type pgHub struct {
	key string
	cfg *pgconn.Config

	mu       sync.Mutex                       // protects the following fields
	refs     int                              // tables holding the hub
	watchers map[string]map[*watcher]struct{} // listening watchers by channel
	pending  map[string]struct{}              // channels to NOTIFY
	quiet    map[string]time.Time             // channels without listeners, until when
	asked    int                              // notify calls since the last send
	lastUse  time.Time                        // of the last notify or listener
	dirty    bool                             // work arrived since the goroutine looked
	running  bool                             // the goroutine runs
	stopping bool                             // the last table released the hub
	cancel   context.CancelFunc               // the goroutine's lifetime
	wakeUp   context.CancelFunc               // ends the goroutine's wait, if it waits
	done     chan struct{}                    // closed when the goroutine exits
	pid      uint32                           // backend PID of the connection, 0 if none
	channels int                              // channels listened on the connection
}

// acquireHub returns the hub of info's database, counted as held until
// release.
func acquireHub(info *pgConnInfo) *pgHub {
	pgHubs.mu.Lock()
	defer pgHubs.mu.Unlock()
	h := pgHubs.m[info.key]
	if h == nil {
		h = &pgHub{
			key:      info.key,
			cfg:      info.cfg,
			watchers: make(map[string]map[*watcher]struct{}),
			pending:  make(map[string]struct{}),
			quiet:    make(map[string]time.Time),
		}
		pgHubs.m[info.key] = h
	}
	h.mu.Lock()
	h.refs++
	h.mu.Unlock()
	return h
}

// release ends a hold of acquireHub. The last one forgets the hub and
// stops its goroutine and waits for it: at once, or, if flush, after it
// sent the pending NOTIFYs (at most pgStopFlush later).
func (h *pgHub) release(flush bool) {
	pgHubs.mu.Lock()
	h.mu.Lock()
	h.refs--
	var (
		done   chan struct{}
		cancel context.CancelFunc
	)
	if h.refs == 0 {
		if pgHubs.m[h.key] == h {
			delete(pgHubs.m, h.key)
		}
		h.stopping = true
		// The last goroutine started; it waited for the ones before it.
		done, cancel = h.done, h.cancel
		if h.running && flush && len(h.pending) > 0 {
			h.kickLocked()
		} else if cancel != nil {
			cancel()
		}
	}
	h.mu.Unlock()
	pgHubs.mu.Unlock()
	if done == nil {
		return
	}
	t := time.NewTimer(pgStopFlush)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		cancel()
		<-done
	}
}

// listen registers w for the notifications of channel.
func (h *pgHub) listen(channel string, w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := h.watchers[channel]
	if ws == nil {
		ws = make(map[*watcher]struct{})
		h.watchers[channel] = ws
	}
	ws[w] = struct{}{}
	h.startLocked()
}

// unlisten undoes listen.
func (h *pgHub) unlisten(channel string, w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := h.watchers[channel]
	delete(ws, w)
	if len(ws) == 0 {
		delete(h.watchers, channel)
		h.lastUse = time.Now() // keep the connection a while for the next stream
		h.kickLocked()
	}
}

// notify asks for a NOTIFY on channel. It does not block. Only the first
// request after a send wakes the goroutine: while requests are pending,
// the goroutine sends them when due by itself. A request on a channel
// the goroutine found no listener of in the last pgPresenceTTL is
// dropped.
func (h *pgHub) notify(channel string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastUse = time.Now()
	if until, ok := h.quiet[channel]; ok {
		if h.lastUse.Before(until) {
			return
		}
		delete(h.quiet, channel)
	}
	first := len(h.pending) == 0
	h.pending[channel] = struct{}{}
	h.asked++
	if first || !h.running {
		h.startLocked()
	}
}

// startLocked starts the goroutine unless it runs (then wakes it) or the
// hub is stopped.
func (h *pgHub) startLocked() {
	switch {
	case h.stopping:
	case h.running:
		h.kickLocked()
	default:
		h.running, h.dirty = true, true
		// The goroutine's lifetime: cancelled by the last release.
		ctx, cancel := context.WithCancel(context.Background())
		prev := h.done
		h.cancel, h.done = cancel, make(chan struct{})
		go h.run(ctx, prev, h.done)
	}
}

// kickLocked makes the goroutine look at its work again.
func (h *pgHub) kickLocked() {
	h.dirty = true
	if h.wakeUp != nil {
		h.wakeUp()
	}
}

// work is what the goroutine does next.
type pgWork struct {
	listen map[string]bool // channels to listen on
	sends  []string        // channels to NOTIFY
	asked  int             // notify calls that sends answer
	sendAt time.Time       // when pending NOTIFYs may be sent, if not now
	exit   bool
}

// takeWork returns the goroutine's work, or exit (then the goroutine is
// marked stopped: a later start makes a new one). Pending NOTIFYs are
// taken only gap after the last send (lastSend), or when stopping.
func (h *pgHub) takeWork(ctx context.Context, lastSend time.Time, gap time.Duration) pgWork {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dirty = false
	w := pgWork{listen: make(map[string]bool, len(h.watchers))}
	for ch := range h.watchers {
		w.listen[ch] = true
	}
	if due := lastSend.Add(gap); len(h.pending) > 0 && !h.stopping && time.Now().Before(due) {
		w.sendAt = due
	} else {
		for ch := range h.pending {
			w.sends = append(w.sends, ch)
		}
		clear(h.pending)
		w.asked, h.asked = h.asked, 0
	}
	idle := len(h.watchers) == 0 && len(h.pending) == 0 && len(w.sends) == 0 && time.Since(h.lastUse) >= pgHubIdle
	if ctx.Err() != nil || idle || h.stopping && len(w.sends) == 0 {
		h.running, h.pid, h.channels = false, 0, 0
		w.exit = true
	}
	return w
}

// setQuiet records channels found without listeners at now: their
// notify calls are dropped until pgPresenceTTL later.
func (h *pgHub) setQuiet(channels []string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ch := range channels {
		h.quiet[ch] = now.Add(pgPresenceTTL)
	}
}

// requeue puts back sends that were not sent.
func (h *pgHub) requeue(sends []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ch := range sends {
		h.pending[ch] = struct{}{}
	}
}

// setConn records the connection's state for the tests.
func (h *pgHub) setConn(pid uint32, channels int) {
	h.mu.Lock()
	h.pid, h.channels = pid, channels
	h.mu.Unlock()
}

// waitCtx returns the context of the goroutine's next wait for a
// notification, ended by new work, by sendAt (if not zero), by the idle
// deadline when nothing listens, or by ctx; ok is false if work arrived
// already.
func (h *pgHub) waitCtx(ctx context.Context, sendAt time.Time) (context.Context, context.CancelFunc, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dirty || h.stopping {
		return nil, nil, false
	}
	var (
		wctx   context.Context
		cancel context.CancelFunc
	)
	switch {
	case !sendAt.IsZero():
		wctx, cancel = context.WithDeadline(ctx, sendAt)
	case len(h.watchers) == 0:
		wctx, cancel = context.WithDeadline(ctx, h.lastUse.Add(pgHubIdle))
	default:
		wctx, cancel = context.WithCancel(ctx)
	}
	h.wakeUp = cancel
	return wctx, cancel, true
}

func (h *pgHub) endWait() {
	h.mu.Lock()
	h.wakeUp = nil
	h.mu.Unlock()
}

// run is the hub's goroutine: it keeps the connection, LISTENs on the
// channels of the listening watchers, sends the pending NOTIFYs and waits
// for notifications, until takeWork says to exit. It first waits for the
// exit of the goroutine before it (prev, closed or nil), which may still
// be closing its connection: waiting for the last goroutine's done waits
// for all.
func (h *pgHub) run(ctx context.Context, prev <-chan struct{}, done chan<- struct{}) {
	var (
		conn     *pgconn.PgConn
		listened map[string]bool
		timer    wait.Timer
		backoff  = pgReconnectMin
		lastSend time.Time
		gap      = pgNotifyGap
		// heard holds the channels found with a listener in another
		// session, and when.
		heard = make(map[string]time.Time)
	)
	defer func() {
		timer.Stop()
		if conn != nil {
			pgClose(conn)
		}
		close(done)
	}()
	if prev != nil {
		<-prev
	}
	// fail drops the connection after an error; the next one is tried
	// after a backoff unless the connection had worked.
	fail := func(sends []string) bool {
		h.requeue(sends)
		if conn != nil {
			pgClose(conn)
			conn = nil
			h.setConn(0, 0)
		}
		if err := timer.Sleep(ctx, backoff); err != nil {
			return false
		}
		backoff = min(2*backoff, pgReconnectMax)
		return true
	}
	for {
		w := h.takeWork(ctx, lastSend, gap)
		if w.exit {
			return
		}
		if conn == nil {
			c, err := h.connect(ctx)
			if err != nil {
				if !fail(w.sends) {
					return
				}
				continue
			}
			conn, listened = c, make(map[string]bool)
		}
		// Listeners of the channels to notify: looked for first on the
		// channels not known to have one, in the NOTIFY's transaction
		// on those last found with one longer ago than pgPresenceTTL.
		now := time.Now()
		var unknown, recheck []string
		for _, ch := range w.sends {
			switch at, ok := heard[ch]; {
			case !ok:
				unknown = append(unknown, ch)
			case now.Sub(at) >= pgPresenceTTL:
				recheck = append(recheck, ch)
			}
		}
		sends := w.sends
		if len(unknown) > 0 {
			res, err := conn.Exec(ctx, pgPresenceSQL(unknown)).ReadAll()
			if err == nil {
				err = h.notePresence(res, unknown, heard, now)
			}
			if err != nil {
				if !fail(w.sends) {
					return
				}
				continue
			}
			sends = slices.DeleteFunc(slices.Clone(sends), func(ch string) bool {
				_, ok := heard[ch]
				return !ok
			})
		}
		var (
			b     strings.Builder
			added []string
		)
		if len(recheck) > 0 {
			b.WriteString(pgPresenceSQL(recheck)) // the first result
		}
		for ch := range w.listen {
			if !listened[ch] {
				fmt.Fprintf(&b, "LISTEN %s; SELECT pg_advisory_lock_shared(%d, hashtext(%s)); ", pgQuoteIdent(ch), pgListenLockKey, pgQuoteLiteral(ch))
				added = append(added, ch)
			}
		}
		for ch := range listened {
			if !w.listen[ch] {
				fmt.Fprintf(&b, "UNLISTEN %s; SELECT pg_advisory_unlock_shared(%d, hashtext(%s)); ", pgQuoteIdent(ch), pgListenLockKey, pgQuoteLiteral(ch))
			}
		}
		for _, ch := range sends {
			b.WriteString("NOTIFY " + pgQuoteIdent(ch) + "; ")
		}
		if b.Len() > 0 {
			// One simple query: one transaction, one round trip.
			res, err := conn.Exec(ctx, b.String()).ReadAll()
			if err == nil && len(recheck) > 0 {
				err = h.notePresence(res, recheck, heard, now)
			}
			if err != nil {
				if !fail(w.sends) {
					return
				}
				continue
			}
			backoff = pgReconnectMin
			listened = w.listen
			if len(sends) > 0 {
				lastSend, gap = time.Now(), pgSendGap(w.asked)
			}
			h.setConn(conn.PID(), len(listened))
			// Streams read again what committed before LISTEN.
			for _, ch := range added {
				h.wake(ch)
			}
		}
		wctx, cancel, ok := h.waitCtx(ctx, w.sendAt)
		if !ok {
			continue
		}
		err := conn.WaitForNotification(wctx)
		interrupted := wctx.Err() != nil
		h.endWait()
		cancel()
		switch {
		case err == nil, ctx.Err() != nil:
			// A notification (delivered by onNotification), or the end.
		case interrupted:
			// New work, or the idle deadline: look again. pgconn keeps
			// the connection usable after a cancelled wait.
		default:
			// The connection failed: reconnect at once.
			pgClose(conn)
			conn = nil
			h.setConn(0, 0)
		}
	}
}

// pgSendGap returns the least time between a NOTIFY transaction that
// answered asked notify calls and the next: pgNotifyGap per call, at most
// pgNotifyGapMax. Calls that come less often than one per pgNotifyGap
// each get a NOTIFY that waits at most pgNotifyGap; as they come faster,
// each NOTIFY answers more of them, so that the NOTIFY transactions, which
// cost the server about as much as a small write transaction, stay a
// small share of a busy writer's (at most 1/pgNotifyGapMax per second)
// while waiting at most pgNotifyGapMax more.
func pgSendGap(asked int) time.Duration {
	return min(time.Duration(max(asked, 1))*pgNotifyGap, pgNotifyGapMax)
}

// pgPresenceSQL returns a statement whose one row tells, for each of
// channels, whether no other session holds its listener lock ("t": the
// exclusive lock was free, and is held to the end of the transaction).
func pgPresenceSQL(channels []string) string {
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, ch := range channels {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "pg_try_advisory_xact_lock(%d, hashtext(%s))", pgListenLockKey, pgQuoteLiteral(ch))
	}
	return b.String() + "; "
}

// notePresence reads the result of pgPresenceSQL(channels), the first of
// res, looked for at now: a channel with a listener goes into heard, the
// others out of it and into the hub's quiet channels.
func (h *pgHub) notePresence(res []*pgconn.Result, channels []string, heard map[string]time.Time, now time.Time) error {
	if len(res) == 0 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != len(channels) {
		return errors.New("rsql: unexpected result of the listener check")
	}
	var quiet []string
	for i, ch := range channels {
		if string(res[0].Rows[0][i]) == "f" { // held by a listener
			heard[ch] = now
		} else {
			delete(heard, ch)
			quiet = append(quiet, ch)
		}
	}
	h.setQuiet(quiet, now)
	return nil
}

// connect opens the notify connection.
func (h *pgHub) connect(ctx context.Context) (*pgconn.PgConn, error) {
	if hook := testHookPGConnect.Load(); hook != nil {
		if err := (*hook)(ctx); err != nil {
			return nil, err
		}
	}
	cfg := h.cfg.Copy()
	cfg.OnNotification = h.onNotification
	cfg.OnNotice = nil
	// The goroutine's wait for a notification is interrupted whenever
	// work arrives: by a read deadline, never by a cancel request (a new
	// connection to the server each time), whatever the pool's setting.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = make(map[string]string)
	}
	cfg.RuntimeParams["application_name"] = pgNotifyApp
	// A notification does not survive a crash: its commit need not wait
	// for the WAL to reach the disk.
	cfg.RuntimeParams["synchronous_commit"] = "off"
	ctx, cancel := context.WithTimeout(ctx, pgConnectTimeout)
	defer cancel()
	return pgconn.ConnectConfig(ctx, cfg)
}

// onNotification is called by pgconn on the hub's goroutine for each
// notification the connection receives.
func (h *pgHub) onNotification(c *pgconn.PgConn, n *pgconn.Notification) {
	if n.PID == c.PID() {
		return // sent by this process, whose streams its inserts woke
	}
	h.wake(n.Channel)
	if hook := testHookPGNotified.Load(); hook != nil {
		(*hook)(n.Channel)
	}
}

// wake wakes the watchers listening on channel.
func (h *pgHub) wake(channel string) {
	h.mu.Lock()
	ws := make([]*watcher, 0, len(h.watchers[channel]))
	for w := range h.watchers[channel] {
		ws = append(ws, w)
	}
	h.mu.Unlock()
	for _, w := range ws {
		w.wake()
	}
}

// pgClose closes conn, bounded.
func pgClose(conn *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// pgQuoteLiteral quotes a PostgreSQL string literal, whatever the
// server's standard_conforming_strings.
func pgQuoteLiteral(s string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// pgQuoteIdent quotes a PostgreSQL identifier.
func pgQuoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
