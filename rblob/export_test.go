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
