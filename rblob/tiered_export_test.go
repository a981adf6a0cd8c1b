package rblob

// SetTieredHook makes tiered clients call f at their switch points
// ("switch", "table", "back"; see testHookTiered) until the test ends.
func SetTieredHook(t interface{ Cleanup(func()) }, f func(stage string)) {
	testHookTiered.Store(&f)
	t.Cleanup(func() { testHookTiered.Store(nil) })
}
