package reflex

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/seed-e488ba2e/reflex/internal/bounded"
)

// NewMockStream returns a StreamFunc for tests. Each stream yields, in
// slice order, the events whose integer ID is greater than after ("" means
// all events, including ID "0"), then returns endErr from every further
// Recv. Stream options are ignored. A non-integer after makes Recv return
// an error wrapping ErrInvalidCursor (and strconv's error).
func NewMockStream(events []*Event, endErr error) StreamFunc {
	return func(ctx context.Context, after string, _ ...StreamOption) (StreamClient, error) {
		m := &mockClient{events: events, endErr: endErr, after: -1}
		if after != "" {
			a, err := strconv.ParseInt(after, 10, 64)
			if err != nil {
				m.err = fmt.Errorf("%w: mock stream: %s: %w", ErrInvalidCursor, bounded.Quote(after), errors.Unwrap(err))
			}
			m.after = a
		}
		return m, nil
	}
}

type mockClient struct {
	events []*Event
	endErr error
	err    error
	after  int64
	next   int
}

func (m *mockClient) Recv() (*Event, error) {
	if m.err != nil {
		return nil, m.err
	}
	for m.next < len(m.events) {
		e := m.events[m.next]
		m.next++
		if e.IDInt() > m.after {
			return e, nil
		}
	}
	return nil, m.endErr
}
