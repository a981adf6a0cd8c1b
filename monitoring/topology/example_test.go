package topology_test

import (
	"context"
	"os"

	"github.com/seed-e488ba2e/reflex/monitoring/topology"
)

// Example declares the network of a "welcome" service, which consumes
// the users service's stream over gRPC, and prints it as Mermaid with its
// consumer's lag.
func Example() {
	g := topology.New("welcome")
	users := g.Peer("users").Stream("user_events")
	cursors := g.CursorStore("cursors")
	g.Consumer("welcome_emails", cursors, users).Lag(func(ctx context.Context) (int64, error) {
		return 3, nil // the head of user_events minus the stored cursor
	})
	if err := g.WriteMermaid(context.Background(), os.Stdout, topology.WithLive()); err != nil {
		panic(err)
	}
	// Output:
	// flowchart LR
	// 	subgraph c0["service welcome"]
	// 		n2[("cursor store<br/>cursors")]
	// 		n3["consumer<br/>welcome_emails<br/>lag 3 events"]
	// 	end
	// 	subgraph c1["peer users"]
	// 		n1(["stream<br/>user_events"])
	// 	end
	// 	n1 -->|"gRPC"| n3
	// 	n3 -.->|"cursor"| n2
}
