package rsql

// GapFills returns how many gaps the table's gap fillers (FillGaps,
// FillGapsLeased) have worked on.
func (t *EventsTable) GapFills() int64 { return t.gaps.fills.Load() }
