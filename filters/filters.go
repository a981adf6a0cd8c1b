package filters

import (
	"errors"
	"fmt"

	"github.com/seed-e488ba2e/reflex"
)

var (
	// ErrInvalidMetadataEventFilter is returned by MetadataEventFilter when
	// its deserializer or its data filter is nil.
	ErrInvalidMetadataEventFilter = errors.New("filters: invalid metadata event filter")

	// ErrDeserialization is wrapped, together with the deserializer's own
	// error, by the error a MetadataEventFilter's filter returns when the
	// event's MetaData cannot be deserialized.
	ErrDeserialization = errors.New("filters: metadata deserialization failed")
)

// IsMetadataEventFilterErr reports whether err is or wraps
// ErrInvalidMetadataEventFilter.
func IsMetadataEventFilterErr(err error) bool {
	return errors.Is(err, ErrInvalidMetadataEventFilter)
}

// IsDeserializationErr reports whether err is or wraps ErrDeserialization.
// An unrelated error with the same message does not match.
func IsDeserializationErr(err error) bool {
	return errors.Is(err, ErrDeserialization)
}

// AllEventFilters returns a filter that passes an event only if every one
// of fs does. The filters run in order; the first that returns false or an
// error stops the evaluation and its error is returned with false. With no
// filters every event passes.
//
// AllEventFilters panics, with a "filters:"-prefixed message, if a filter
// is nil.
func AllEventFilters(fs ...reflex.EventFilter) reflex.EventFilter {
	mustNotBeNil("AllEventFilters", fs)
	return func(e *reflex.Event) (bool, error) {
		for _, f := range fs {
			ok, err := f(e)
			if err != nil {
				return false, err
			}
			if !ok {
				return false, nil
			}
		}
		return true, nil
	}
}

// AnyEventFilters returns a filter that passes an event if any one of fs
// does. The filters run in order until one returns (true, nil). A filter
// that returns an error does not count as a match, even with true; if no
// filter matches, the filter returns false and the error of the last filter
// that failed (nil if none failed). With no filters no event passes.
//
// AnyEventFilters panics, with a "filters:"-prefixed message, if a filter
// is nil.
func AnyEventFilters(fs ...reflex.EventFilter) reflex.EventFilter {
	mustNotBeNil("AnyEventFilters", fs)
	return func(e *reflex.Event) (bool, error) {
		var last error
		for _, f := range fs {
			ok, err := f(e)
			if err != nil {
				last = err
				continue
			}
			if ok {
				return true, nil
			}
		}
		return false, last
	}
}

// mustNotBeNil panics if one of fs, the filters given to fn, is nil: a
// programming error, reported when the filter is built rather than when
// an event reaches it.
func mustNotBeNil(fn string, fs []reflex.EventFilter) {
	for i, f := range fs {
		if f == nil {
			panic(fmt.Sprintf("filters: %s: filter %d is nil", fn, i))
		}
	}
}

// Deserializer decodes an event's MetaData into a T. It receives nil for
// events without metadata.
type Deserializer[T any] func(metadata []byte) (T, error)

// DataFilter reports whether an event whose metadata decoded to data should
// be processed.
type DataFilter[T any] func(data T) (bool, error)

// MetadataEventFilter returns a filter that decodes each event's MetaData
// with ds (nil for a nil event) and returns what flt returns for the
// result. If ds fails, flt is not called and the filter returns false and
// an error that wraps both ErrDeserialization and the deserializer's error;
// an error from flt is returned as is.
//
// MetadataEventFilter returns ErrInvalidMetadataEventFilter (wrapped) if ds
// or flt is nil.
func MetadataEventFilter[T any](ds Deserializer[T], flt DataFilter[T]) (reflex.EventFilter, error) {
	switch {
	case ds == nil:
		return nil, fmt.Errorf("%w: nil deserializer", ErrInvalidMetadataEventFilter)
	case flt == nil:
		return nil, fmt.Errorf("%w: nil data filter", ErrInvalidMetadataEventFilter)
	}
	return func(e *reflex.Event) (bool, error) {
		var md []byte
		if e != nil {
			md = e.MetaData
		}
		data, err := ds(md)
		if err != nil {
			return false, fmt.Errorf("%w: %w", ErrDeserialization, err)
		}
		return flt(data)
	}, nil
}
