// Package reflextest holds in-memory fakes of the reflex interfaces and the
// conformance suites that every implementation runs.
//
// [Log] is an in-memory event log whose Stream method is a
// [reflex.StreamFunc]; [CursorStore] is an in-memory [reflex.CursorStore].
// Both can inject errors and delays, in the spirit of database/sql's
// fakedb_test.go. [TestCursorStore] and [TestStreamFunc] check that an
// implementation behaves as the reflex interfaces' documentation says
// (TestStreamFunc also pins the rules every stream client of this module
// follows: Close then Recv, invalid cursors); the fakes, rsql, rblob and
// the gRPC clients all run them, as io/fs implementations run
// testing/fstest.TestFS.
//
// Log and CursorStore start no goroutine.
package reflextest
