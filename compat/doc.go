// Package compat holds no code: its tests use this module's exported API
// exactly as code written against github.com/luno/reflex uses it (luno/reflex's
// type names, option function types and signatures, assigned to variables
// of luno/reflex's types), so that the build of its tests
// fails if a name or signature a switching user relies on changes.
//
// Each file covers one package: reflex_test.go the root package (and
// filters), rsql_events_test.go and rsql_cursors_test.go, rpatterns_test.go,
// rblob_test.go, and testhelpers_test.go (grpctest, testmock). Behaviour the reference's users rely on is tested
// in the packages themselves.
package compat
