// Package eventtype holds the one reflex.EventType of events that were
// decoded from storage or from the wire (rsql rows, rblob archives, gRPC
// messages), which keep only the integer value of their type. Compare
// such types with reflex.IsType or ReflexType, never with ==.
package eventtype

// Type is an event type known only by its integer value.
type Type int

// ReflexType returns the integer value of t.
func (t Type) ReflexType() int { return int(t) }
