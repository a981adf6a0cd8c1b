package reflex

// SetPeerAccounting turns the per-batch accounting of peers on or off,
// for the benchmark that measures its cost.
func SetPeerAccounting(on bool) { peerAccountingOff.Store(!on) }
