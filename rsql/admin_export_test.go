package rsql

// SetMoveHook sets a function that CursorAuditTable.MoveCursor calls
// inside its transaction, after its lease check; nil removes it.
func SetMoveHook(f func()) {
	if f == nil {
		testHookMoveLocked.Store(nil)
		return
	}
	testHookMoveLocked.Store(&f)
}
