// Package faulttest injects faults into the network and the database that
// reflex runs on, for the fault suite of this module, and holds that suite.
//
// A [Proxy] is a TCP proxy on a loopback port in front of a server (MariaDB
// or a gRPC server): it can cut every connection, black-hole traffic (a
// partition that heals), add latency and refuse new connections. A
// [MariaDB] is a throw-away MariaDB server with its own data directory
// that a test can stop with SIGTERM or SIGKILL, restart on the same port
// and data, and freeze with SIGSTOP. It never touches the shared server
// named by DB_TEST_URI.
//
// The scenario tests of this package run reflex consumers under faults
// (database outages mid catch-up, mid tail and mid cursor flush, killed
// statements and connections, partitions during shutdown, gRPC server
// restarts, cut and black-holed gRPC connections, slow and stalled gRPC
// clients) and check after every fault that every committed event is
// consumed at least once, in order within a run, without noop events, that
// the stored cursor is never ahead of what was consumed, how fast the
// consumer recovers once its peer is reachable again and how fast it
// shuts down.
//
// # Goroutines
//
// A Proxy owns its accept loop, one goroutine per connection (which dials
// the target) and, per connection, a reader and a writer in each
// direction; [Proxy.Close] stops them all and waits for them. A MariaDB
// owns one goroutine per server process, which starts the process and
// reaps it; the test's cleanup kills the process and waits for that
// goroutine.
package faulttest
