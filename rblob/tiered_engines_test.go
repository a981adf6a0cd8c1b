package rblob_test

import (
	"database/sql"
	"testing"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/reflextest"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// tieredServer is a database server engine the tiered-stream tests run
// their events table on.
type tieredServer struct {
	name string // of the subtest
	open func(t testing.TB) *sql.DB
	d    rsql.Dialect
}

// tieredServers are the server engines: MariaDB and PostgreSQL.
var tieredServers = []tieredServer{
	{"mysql", dbtest.Open, rsql.MySQL},
	{"postgres", dbtest.OpenPG, rsql.PostgreSQL},
}

// forTieredServers runs f as a subtest on each server engine.
func forTieredServers(t *testing.T, f func(t *testing.T, s tieredServer)) {
	for _, s := range tieredServers {
		t.Run(s.name, func(t *testing.T) { f(t, s) })
	}
}

// TestStreamTieredConformancePG is TestStreamTieredConformance over a
// PostgreSQL events table: archived and trimmed on PostgreSQL, the tiered
// stream passes the stream suite.
func TestStreamTieredConformancePG(t *testing.T) {
	reflextest.TestStreamFunc(t, reflextest.StreamHarness{
		New: func(t *testing.T) (reflex.StreamFunc, reflextest.Appender) {
			env := newTieredEnv(t, dbtest.OpenPG(t), rsql.PostgreSQL, memBucket(t), 4)
			return env.stream, env.appender()
		},
		InvalidCursors: reflextest.InvalidIntCursors(),
	})
}
