package rsql

import (
	"time"

	"github.com/jackc/pgx/v5"
)

// Internals for the tests of the PostgreSQL notify connection.

// PGSendGap is pgSendGap: the least time between a NOTIFY transaction
// that answered asked notify calls and the next.
var PGSendGap = pgSendGap

// PGConnInfoOf is what an insert through conn records of it (pgCapture).
func PGConnInfoOf(conn *pgx.Conn) { pgConnInfoOf(conn) }

// SetPGPresenceTTL sets how long a notify connection trusts what it found
// of a channel's listeners; call it before any notify connection starts.
func SetPGPresenceTTL(d time.Duration) { pgPresenceTTL = d }

// PGListenLockKey is the first key of a channel's listener lock.
const PGListenLockKey = pgListenLockKey

// PGQuiet reports whether a notify connection found no listener of
// channel lately (its notify calls are dropped).
func PGQuiet(channel string) bool {
	pgHubs.mu.Lock()
	defer pgHubs.mu.Unlock()
	for _, h := range pgHubs.m {
		h.mu.Lock()
		until, ok := h.quiet[channel]
		h.mu.Unlock()
		if ok && time.Now().Before(until) {
			return true
		}
	}
	return false
}
