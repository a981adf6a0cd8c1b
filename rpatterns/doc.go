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
//   - [ConsumerShards], [ParallelConsumer], [ParallelSpecs], [Parallel] and
//     [RunParallel] split one stream between n consumers by hashing.
//
// Specs and running: [NewBootstrapSpec] starts new consumers at the head of
// the stream; [RunForever] and [RunForeverCtx] run a spec again after every
// error with backoff; [Await] waits for an event or a condition.
//
// Streams and stores: [NewPoller] turns a polling function into a
// [reflex.StreamFunc]; [MemCursorStore] and [ReadThroughCursorStore] are
// cursor stores.
//
// Consumers that own goroutines ([BatchConsumer], [ConcurrentConsumer],
// [KeyedConsumer]) start them in Reset, which [reflex.Run] calls at the
// start of every run, and stop them when that run's context ends or when
// Stop is called ([reflex.Spec.Stop]; [RunForever] calls it after every
// run). Stop is idempotent and returns after the goroutines have exited.
//
// Lock order, outer first: BatchConsumer.mu, then BatchConsumer.lifeMu;
// ConcurrentConsumer.mu or KeyedConsumer.mu, then the cursor tracker's mu,
// then GapSequence.mu.
//
// Nothing in this package sleeps with time.Sleep: waits are timers selected
// against the context, so tests can use testing/synctest.
package rpatterns
