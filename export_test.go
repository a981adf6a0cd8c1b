package reflex

// ServerBuffered returns the event bytes the streams of s hold now, and
// the most they have held since s was made.
func ServerBuffered(s *Server) (now, peak int64) { return s.buffered.Load(), s.peak.Load() }
