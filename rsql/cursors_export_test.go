package rsql

// SkipCursorsCatalog makes t behave as if it had read a catalog with no
// limits and a binary name column, for tests whose DBC answers no
// queries.
func SkipCursorsCatalog(t *CursorsTable) {
	t.meta.p.Store(&cursorsMeta{key: nameKey{what: t.name + "." + t.cfg.idField}, curWhat: t.name + "." + t.cfg.cursorField})
}

// StoreTable returns the table a CursorStore writes through.
func StoreTable(s *CursorStore) *CursorsTable { return s.t }
