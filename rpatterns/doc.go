// Package rpatterns holds composable patterns built on the interfaces of
// package reflex. Each helper takes a [reflex.Consumer], [reflex.StreamFunc]
// or [reflex.CursorStore] and returns one, so helpers stack the way
// middleware does.
//
// Consumers:
//   - [NewBestEffortConsumer] skips an event after a number of failures;
//     [NewDeadLetterConsumer] records it with a [reflex.ErrorInsertFunc]
//     first.
//   - [NewAckConsumer] and [NewAckSpec] move the cursor only when the logic
//     acknowledges an event ([AckEvent.Ack]).
//   - [NewBatchConsumer] and [NewBatchSpec] process events in batches by
//     length or by time.
//   - [NewConcurrentConsumer] processes events concurrently in any order;
//     [NewKeyedConsumer] processes events concurrently but keeps the order of
//     the events of each foreign ID. Both advance the cursor only past
//     contiguous completed events ([GapSequence]).
//   - [ConsumerShards], [ParallelConsumer], [ParallelSpecs] and
//     [RunParallel] split one stream between n consumers by hashing.
//   - [NewRateLimitConsumer] bounds the rate; [NewDedupeConsumer] skips
//     events already seen, by ID or by a key within a window;
//     [NewFanInSpec] feeds one consumer from several streams, with one
//     cursor per source.
//
// Specs and running: [NewBootstrapSpec] starts new consumers at the head of
// the stream; [RunForever] and [RunForeverCtx] run a spec again after every
// error, with a backoff that restarts after a run that made progress;
// [Await] waits for an event or a condition.
//
// Across processes: [RunSharded] and [RunShardedSpecs] split a consumer
// into shards shared fairly by every process that runs them (rendezvous
// hashing over the live members), with leases in a [LeaseStore]
// (rsql.LeasesTable in production, [MemLeaseStore] in tests): each shard
// is run by one live process at a time, stopped locally before its lease
// can expire, and handed over at once on a graceful stop. [RunLeased] runs
// a consumer in one process at a time; [HoldLease] runs any function so.
//
// Streams and stores: [NewPoller] turns a polling function into a
// [reflex.StreamFunc]; [MemCursorStore] and [ReadThroughCursorStore] are
// cursor stores.
//
// # Goroutines and their owners
//
// Every goroutine this package starts, and what stops it:
//
//   - [BatchConsumer]: one goroutine that processes batches when their
//     period is over (only with a batch period). Reset starts it; it ends
//     with the context given to Reset (the run's), the next Reset or Stop.
//     Owner: the BatchConsumer; Stop ([reflex.Spec.Stop]) waits for it.
//   - [ConcurrentConsumer]: maxInFlight workers and one cursor loop that
//     writes cursors. Reset, ResetContext or, if neither was called, the
//     first Consume starts them (the last on a lifetime rooted in
//     context.Background(), so that only Stop or a Reset ends it); they
//     end with the context given to ResetContext (NewConcurrentSpec passes
//     the run's), the next Reset or ResetContext, or Stop. Owner: the
//     ConcurrentConsumer; Stop waits for them.
//   - [KeyedConsumer]: its workers and one cursor loop, started and ended
//     like those of ConcurrentConsumer (by Reset(ctx), the first Consume,
//     or Stop). Owner: the KeyedConsumer; Stop waits for them.
//   - [RunParallel]: one goroutine per spec, running [RunForeverCtx].
//     Owner: the RunParallel call, which returns only after they have
//     ended (when its context is done).
//   - [Await]: one goroutine reading the stream and one calling pollFn.
//     Await returns as soon as either answers (as in luno/reflex) and
//     cancels the other, which ends on its own: the stream's when its Recv
//     returns, the poll's when pollFn returns. Nothing waits for it.
//   - [RunSharded], [RunShardedSpecs], [RunLeased] and [HoldLease]: one
//     goroutine per held lease (renewing it, and running its shard under
//     [RunForeverCtx]). Owner: the call, which blocks until its context is
//     done, stops them, waits for them and releases the leases.
//   - [NewFanInSpec]: the stream client of each run reads each source on
//     a goroutine of its own, which queues up to 64 events ahead. Owner:
//     that stream client; its Close (which reflex.Run calls when the run
//     ends) stops them and waits for them.
//   - [Parallel] and [ParallelAck] (deprecated): n goroutines running
//     [RunForever]. Goroutine m ends when getCtx(m) returns a context that
//     is done; nothing else stops it and nothing waits for it. Use
//     [ParallelSpecs] with [RunParallel] instead.
//
// [RunForever], [RunForeverCtx] and the stream of [NewPoller] start no
// goroutine (beyond the short-lived one of context.AfterFunc that cancels
// a run's context when the parent context ends).
//
// Lock order, outer first: BatchConsumer.mu, then BatchConsumer.lifeMu;
// the worker pool's mu (of a ConcurrentConsumer or KeyedConsumer), then the
// cursor tracker's mu, then GapSequence's mu; MemLeaseStore.mu before a
// fenced cursor store's lock, and a lease run's lock last.
//
// Nothing in this package sleeps with time.Sleep: waits are timers
// (internal/wait.Timer) selected against the context, so tests can use
// testing/synctest.
package rpatterns
