package rblob

import (
	"fmt"
	"testing"
	"time"

	"github.com/seed-e488ba2e/reflex"
)

type benchType int

func (t benchType) ReflexType() int { return int(t) }

func benchRecords() [][]byte {
	var recs [][]byte
	for i := 1; i <= 1024; i++ {
		e := reflex.Event{ID: fmt.Sprint(i), Type: benchType(i % 7), ForeignID: fmt.Sprint("fid-", i*31%1000),
			Timestamp: time.Date(2026, 5, 1, 10, 0, 0, i*1001, time.UTC)}
		switch i % 4 {
		case 1:
			e.MetaData = []byte{0, byte(i), '\n', '"', 0xff}
		case 2:
			e.MetaData = fmt.Appendf(nil, `{"n":%d}`, i)
		case 3:
			e.Trace = []byte(fmt.Sprint("trace-", i))
		}
		b, _ := encodeRecord(&e)
		recs = append(recs, b)
	}
	return recs
}

// BenchmarkRecordParts splits the cost of the fast path: parsing, then
// building the event from arena blocks.
func BenchmarkRecordParts(b *testing.B) {
	recs := benchRecords()
	b.Run("parse", func(b *testing.B) {
		var r rawRecord
		i := 0
		for b.Loop() {
			if _, st := parseRecord(recs[i%len(recs)], &r); st != parsed {
				b.Fatal(st)
			}
			i++
		}
	})
	b.Run("parse+event", func(b *testing.B) {
		var r rawRecord
		a := arena{block: true}
		i := 0
		for b.Loop() {
			if _, st := parseRecord(recs[i%len(recs)], &r); st != parsed {
				b.Fatal(st)
			}
			if _, ok := r.event(&a); !ok {
				b.Fatal("event")
			}
			i++
		}
	})
}
