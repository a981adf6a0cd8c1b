package testmock

import (
	"context"

	"github.com/stretchr/testify/mock"

	"github.com/seed-e488ba2e/reflex"
)

// CursorStore is a mock of reflex.CursorStore built on testify's
// mock.Mock, with the API of luno/reflex's testmock.CursorStore, so that
// tests written against it keep working: set expectations with On and
// check them with AssertExpectations, as in
//
//	cs := new(testmock.CursorStore)
//	cs.On("GetCursor", mock.Anything, "consumer").Return("10", nil)
//	cs.On("SetCursor", mock.Anything, "consumer", mock.Anything).Return(nil)
//	cs.On("Flush", mock.Anything).Return(nil)
//	// ... run the code under test with cs ...
//	cs.AssertExpectations(t)
//
// Each result given to Return may also be a function of the method's
// arguments that returns it: func(context.Context, string) string for the
// cursor of GetCursor, func(context.Context, string) error for its error,
// func(context.Context, string, string) error for SetCursor and
// func(context.Context) error for Flush. As with testify, a call that
// matches no expectation, or results of the wrong type, panic. Its methods
// are safe for concurrent use.
//
// For an in-memory store that records calls and injects faults without
// expectations, use reflextest.NewCursorStore.
type CursorStore struct {
	mock.Mock
}

var _ reflex.CursorStore = (*CursorStore)(nil)

// GetCursor returns the results of the matching GetCursor expectation.
func (s *CursorStore) GetCursor(ctx context.Context, consumerName string) (string, error) {
	ret := s.Called(ctx, consumerName)
	var cursor string
	if f, ok := ret.Get(0).(func(context.Context, string) string); ok {
		cursor = f(ctx, consumerName)
	} else {
		cursor = ret.String(0)
	}
	return cursor, errorResult(ret, 1, func(f func(context.Context, string) error) error { return f(ctx, consumerName) })
}

// SetCursor returns the result of the matching SetCursor expectation.
func (s *CursorStore) SetCursor(ctx context.Context, consumerName string, cursor string) error {
	ret := s.Called(ctx, consumerName, cursor)
	return errorResult(ret, 0, func(f func(context.Context, string, string) error) error { return f(ctx, consumerName, cursor) })
}

// Flush returns the result of the matching Flush expectation.
func (s *CursorStore) Flush(ctx context.Context) error {
	ret := s.Called(ctx)
	return errorResult(ret, 0, func(f func(context.Context) error) error { return f(ctx) })
}

// errorResult returns result i of ret as an error: what call returns for a
// function of type F, else the value itself (nil or an error).
func errorResult[F any](ret mock.Arguments, i int, call func(F) error) error {
	if f, ok := ret.Get(i).(F); ok {
		return call(f)
	}
	return ret.Error(i)
}
