// Package testmock holds test helpers for services that use reflex, in the
// spirit of net/http/httptest: [NewTestStreamer] is an in-memory event
// stream whose events the test inserts itself, and [AwaitConsumer] waits
// until a consumer's cursor reaches an event.
//
// For an in-memory [reflex.CursorStore] (with fault injection and call
// recording) use [reflextest.NewCursorStore]; for an event log that assigns
// IDs itself use [reflextest.NewLog]. This package has no generated mocks.
//
// [reflextest.NewCursorStore]: https://pkg.go.dev/github.com/seed-e488ba2e/reflex/reflextest#NewCursorStore
// [reflextest.NewLog]: https://pkg.go.dev/github.com/seed-e488ba2e/reflex/reflextest#NewLog
package testmock
