package faulttest

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// portLo and portHi bound the ports FreePort tries: below Linux's
// ephemeral range (32768-60999), so that no outgoing connection takes the
// port while its server is down between a stop and a restart.
const portLo, portHi = 20000, 32000

// freePortAttempts is how many random ports FreePort tries.
const freePortAttempts = 100

// FreePort returns a port of 127.0.0.1 that nothing listens on now, for
// a server that stops and restarts on the same port. It is below the
// ephemeral port range, so only another listener can take it meanwhile;
// a server that fails to bind it should ask for another. It fails tb if
// it finds none.
func FreePort(tb testing.TB) int {
	tb.Helper()
	for range freePortAttempts {
		if p := portLo + rand.IntN(portHi-portLo); portFree(p) {
			return p
		}
	}
	tb.Fatalf("faulttest: no free port in [%d, %d) after %d tries", portLo, portHi, freePortAttempts)
	return 0
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}
