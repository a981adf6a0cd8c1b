package reflextest_test

import (
	"testing"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/reflextest"
)

func TestLogConformance(t *testing.T) {
	reflextest.TestStreamFunc(t, reflextest.StreamHarness{
		New: func(t *testing.T) (reflex.StreamFunc, reflextest.Appender) {
			l := reflextest.NewLog()
			return l.Stream, func(t *testing.T, events ...reflex.Event) { l.Append(events...) }
		},
		InvalidCursors: reflextest.InvalidIntCursors(),
	})
}

func TestCursorStoreConformance(t *testing.T) {
	reflextest.TestCursorStore(t, func(t *testing.T) reflex.CursorStore { return reflextest.NewCursorStore() })
}

func TestBufferedCursorStoreConformance(t *testing.T) {
	reflextest.TestCursorStore(t, func(t *testing.T) reflex.CursorStore {
		return reflextest.NewCursorStore(reflextest.WithBuffering())
	})
}
