package rblob

import "github.com/seed-e488ba2e/reflex"

// EncodeRecord returns e as an Archiver writes it: one JSON line.
func EncodeRecord(e *reflex.Event) string {
	b, err := encodeRecord(e)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// DecodeRecordJSON decodes a record with encoding/json only, as
// DecodeArchived did before its fast path.
func DecodeRecordJSON(b []byte) (*reflex.Event, error) { return decodeRecordJSON(b) }

// SetReadAhead makes streams read at most n bytes of an object when they
// open it (and the rest as they decode it) until the test ends.
func SetReadAhead(t interface{ Cleanup(func()) }, n int) {
	readAheadHook.Store(int64(n))
	t.Cleanup(func() { readAheadHook.Store(0) })
}
