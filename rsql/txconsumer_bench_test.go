package rsql_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/internal/dbtest"
	"github.com/seed-e488ba2e/reflex/rpatterns"
	"github.com/seed-e488ba2e/reflex/rsql"
)

// benchCatchUpEvents is the size of the catch-up of
// BenchmarkTxConsumerCatchUp.
const benchCatchUpEvents = 200000

// BenchmarkTxConsumerCatchUp consumes the same 200,000 events from the
// start, in one run against MariaDB, with a plain consumer and the
// asynchronous cursors table (the default) and with the TxConsumer
// (batches of 100 events), each with no effect and with one INSERT per
// event (autocommit for the plain consumer, in the batch's transaction
// for the TxConsumer), and the TxConsumer fenced by a lease. It reports
// events/s; compare the rows of one run.
func BenchmarkTxConsumerCatchUp(b *testing.B) {
	db := dbtest.Open(b)
	ctx := context.Background()
	f := newTxFixture(b, leaseDB{"MariaDB", db, rsql.MySQL}, benchCatchUpEvents)
	stream := f.events.ToStream(db, reflex.WithStreamToHead())
	leases := f.leases.ToStore(db)
	seq := 0
	insertPlain := func(ctx context.Context, e *reflex.Event) error {
		_, err := db.ExecContext(ctx, "INSERT INTO "+f.effects+" (event_id, n) VALUES (?, 1)", e.IDInt())
		return err
	}
	noTx := func(context.Context, *sql.Tx, *reflex.Event) error { return nil }
	for _, bc := range []struct {
		name   string
		effect bool
		spec   func(name string) reflex.Spec
	}{
		{"plain-async-noeffect", false, func(name string) reflex.Spec {
			return reflex.NewSpec(stream, f.cursors.ToStore(db), reflex.NewConsumer(name, func(context.Context, *reflex.Event) error { return nil }))
		}},
		{"tx-noeffect", false, func(name string) reflex.Spec {
			return rsql.NewTxSpec(stream, rsql.NewTxConsumer(name, db, f.cursors.ToStore(db), noTx))
		}},
		{"plain-async-insert", true, func(name string) reflex.Spec {
			return reflex.NewSpec(stream, f.cursors.ToStore(db), reflex.NewConsumer(name, insertPlain))
		}},
		{"tx-insert", true, func(name string) reflex.Spec {
			return rsql.NewTxSpec(stream, rsql.NewTxConsumer(name, db, f.cursors.ToStore(db), f.effect))
		}},
		{"tx-fenced-insert", true, func(name string) reflex.Spec {
			l, err := leases.ClaimLease(ctx, rpatterns.Lease{Name: name, Shards: 1, Owner: "bench"}, time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			fenced, err := leases.FenceCursorStore(f.cursors.ToStore(db), l, nil)
			if err != nil {
				b.Fatal(err)
			}
			return rsql.NewTxSpec(stream, rsql.NewTxConsumer(name, db, fenced, f.effect))
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if bc.effect {
					b.StopTimer()
					if _, err := db.ExecContext(ctx, "TRUNCATE TABLE "+f.effects); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				seq++
				spec := bc.spec(fmt.Sprintf("bench_%d", seq))
				if err := reflex.Run(ctx, spec); !reflex.IsHeadReachedErr(err) {
					b.Fatalf("Run = %v", err)
				}
				_ = spec.Stop()
				if err := f.cursors.Flush(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(benchCatchUpEvents*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
