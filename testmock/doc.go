// Package testmock holds test helpers for services that use reflex, with
// the API of luno/reflex's testmock: [NewTestStreamer] is an in-memory
// event stream whose events the test inserts itself, [AwaitConsumer] waits
// until a consumer's cursor reaches an event, and [CursorStore] is a
// testify mock of [reflex.CursorStore] for tests written with
// expectations.
//
// For an in-memory [reflex.CursorStore] with fault injection and call
// recording, use [reflextest.NewCursorStore]; for an event log that
// assigns IDs itself, [reflextest.NewLog] (which NewTestStreamer wraps).
//
// The package starts no goroutine.
//
// [reflextest.NewCursorStore]: https://pkg.go.dev/github.com/seed-e488ba2e/reflex/reflextest#NewCursorStore
// [reflextest.NewLog]: https://pkg.go.dev/github.com/seed-e488ba2e/reflex/reflextest#NewLog
package testmock
