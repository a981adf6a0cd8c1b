package filters_test

import (
	"errors"
	"slices"
	"strconv"
	"testing"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/filters"
)

// result is what a recorded filter returns.
type result struct {
	ok  bool
	err error
}

var (
	errA = errors.New("a failed")
	errB = errors.New("b failed")
)

// recorded returns filters returning rs and the indexes of the filters that
// ran, in order.
func recorded(rs ...result) ([]reflex.EventFilter, *[]int) {
	var calls []int
	fs := make([]reflex.EventFilter, len(rs))
	for i, r := range rs {
		fs[i] = func(*reflex.Event) (bool, error) {
			calls = append(calls, i)
			return r.ok, r.err
		}
	}
	return fs, &calls
}

func TestAllEventFilters(t *testing.T) {
	tests := []struct {
		name    string
		rs      []result
		want    bool
		wantErr error
		calls   []int
	}{
		{name: "empty", want: true},
		{name: "all true", rs: []result{{ok: true}, {ok: true}, {ok: true}}, want: true, calls: []int{0, 1, 2}},
		{name: "false stops", rs: []result{{ok: true}, {ok: false}, {ok: true}}, calls: []int{0, 1}},
		{name: "error stops", rs: []result{{ok: true}, {err: errA}, {ok: true}}, wantErr: errA, calls: []int{0, 1}},
		{name: "error with true is false", rs: []result{{ok: true, err: errA}, {ok: true}}, wantErr: errA, calls: []int{0}},
		{name: "first false", rs: []result{{ok: false}, {err: errB}}, calls: []int{0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs, calls := recorded(tc.rs...)
			got, err := filters.AllEventFilters(fs...)(&reflex.Event{ID: "1"})
			if got != tc.want || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("AllEventFilters = (%v, %v), want (%v, %v)", got, err, tc.want, tc.wantErr)
			}
			if !slices.Equal(*calls, tc.calls) {
				t.Errorf("filters called %v, want %v", *calls, tc.calls)
			}
		})
	}
}

func TestAnyEventFilters(t *testing.T) {
	tests := []struct {
		name    string
		rs      []result
		want    bool
		wantErr error
		calls   []int
	}{
		{name: "empty"},
		{name: "first true stops", rs: []result{{ok: true}, {ok: true}}, want: true, calls: []int{0}},
		{name: "later true", rs: []result{{ok: false}, {ok: false}, {ok: true}, {ok: false}}, want: true, calls: []int{0, 1, 2}},
		{name: "none true", rs: []result{{ok: false}, {ok: false}}, calls: []int{0, 1}},
		{name: "error then true", rs: []result{{err: errA}, {ok: true}}, want: true, calls: []int{0, 1}},
		{name: "true with error does not match", rs: []result{{ok: true, err: errA}, {ok: false}}, wantErr: errA, calls: []int{0, 1}},
		{name: "last error wins", rs: []result{{err: errA}, {ok: false}, {err: errB}, {ok: false}}, wantErr: errB, calls: []int{0, 1, 2, 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs, calls := recorded(tc.rs...)
			got, err := filters.AnyEventFilters(fs...)(&reflex.Event{ID: "1"})
			if got != tc.want || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("AnyEventFilters = (%v, %v), want (%v, %v)", got, err, tc.want, tc.wantErr)
			}
			if !slices.Equal(*calls, tc.calls) {
				t.Errorf("filters called %v, want %v", *calls, tc.calls)
			}
		})
	}
}

func TestFiltersReceiveTheEvent(t *testing.T) {
	e := &reflex.Event{ID: "42"}
	var seen []*reflex.Event
	f := func(got *reflex.Event) (bool, error) {
		seen = append(seen, got)
		return false, nil
	}
	_, _ = filters.AllEventFilters(f)(e)
	_, _ = filters.AnyEventFilters(f)(e)
	if len(seen) != 2 || seen[0] != e || seen[1] != e {
		t.Errorf("filters received %v, want the event twice", seen)
	}
}

func atoi(b []byte) (int, error) { return strconv.Atoi(string(b)) }

func even(n int) (bool, error) { return n%2 == 0, nil }

func TestMetadataEventFilterNilArguments(t *testing.T) {
	if _, err := filters.MetadataEventFilter[int](nil, even); !filters.IsMetadataEventFilterErr(err) {
		t.Errorf("nil deserializer: err = %v, want IsMetadataEventFilterErr", err)
	}
	if _, err := filters.MetadataEventFilter[int](atoi, nil); !filters.IsMetadataEventFilterErr(err) {
		t.Errorf("nil data filter: err = %v, want IsMetadataEventFilterErr", err)
	}
	if _, err := filters.MetadataEventFilter[int](nil, nil); !filters.IsMetadataEventFilterErr(err) {
		t.Errorf("both nil: err = %v, want IsMetadataEventFilterErr", err)
	}
	f, err := filters.MetadataEventFilter(atoi, even)
	if err != nil || f == nil {
		t.Fatalf("MetadataEventFilter = (%v, %v), want a filter", f, err)
	}
	if filters.IsMetadataEventFilterErr(errors.New("filters: invalid metadata event filter")) {
		t.Error("IsMetadataEventFilterErr matches an unrelated error with the same message")
	}
}

func TestMetadataEventFilter(t *testing.T) {
	f, err := filters.MetadataEventFilter(atoi, even)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		md   string
		want bool
	}{{"2", true}, {"3", false}, {"0", true}, {"-7", false}} {
		got, err := f(&reflex.Event{MetaData: []byte(tc.md)})
		if err != nil || got != tc.want {
			t.Errorf("filter(%q) = (%v, %v), want (%v, nil)", tc.md, got, err, tc.want)
		}
	}
}

func TestMetadataEventFilterPassesMetaData(t *testing.T) {
	var got [][]byte
	ds := func(b []byte) ([]byte, error) {
		got = append(got, b)
		return b, nil
	}
	f, err := filters.MetadataEventFilter(ds, func([]byte) (bool, error) { return true, nil })
	if err != nil {
		t.Fatal(err)
	}
	md := []byte{0, 1, 0xff}
	for _, e := range []*reflex.Event{{MetaData: md}, {}, nil} {
		if ok, err := f(e); !ok || err != nil {
			t.Errorf("filter(%v) = (%v, %v), want (true, nil)", e, ok, err)
		}
	}
	if len(got) != 3 || &got[0][0] != &md[0] || got[1] != nil || got[2] != nil {
		t.Errorf("deserializer received %v, want the event's MetaData, nil (no metadata), nil (nil event)", got)
	}
}

func TestMetadataEventFilterDeserializationError(t *testing.T) {
	dsErr := errors.New("bad json")
	called := false
	f, err := filters.MetadataEventFilter(
		func([]byte) (int, error) { return 0, dsErr },
		func(int) (bool, error) { called = true; return true, nil },
	)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := f(&reflex.Event{MetaData: []byte("x")})
	if ok {
		t.Error("filter returned true for undecodable metadata")
	}
	if !filters.IsDeserializationErr(err) {
		t.Errorf("err = %v, want IsDeserializationErr", err)
	}
	if !errors.Is(err, dsErr) {
		t.Errorf("err = %v, want it to wrap the deserializer's error", err)
	}
	if called {
		t.Error("data filter called after a deserialization error")
	}
}

func TestMetadataEventFilterDataFilterError(t *testing.T) {
	fltErr := errors.New("filter broke")
	f, err := filters.MetadataEventFilter(atoi, func(int) (bool, error) { return true, fltErr })
	if err != nil {
		t.Fatal(err)
	}
	ok, err := f(&reflex.Event{MetaData: []byte("1")})
	if err != fltErr {
		t.Errorf("err = %v, want the data filter's error unwrapped", err)
	}
	if !ok {
		t.Error("filter did not return the data filter's boolean with its error")
	}
	if filters.IsDeserializationErr(err) {
		t.Error("a data filter error is reported as a deserialization error")
	}
}

func TestIsDeserializationErrUnrelated(t *testing.T) {
	f, _ := filters.MetadataEventFilter(atoi, even)
	_, err := f(&reflex.Event{MetaData: []byte("nan")})
	if !filters.IsDeserializationErr(err) {
		t.Fatalf("err = %v, want IsDeserializationErr", err)
	}
	if filters.IsDeserializationErr(errors.New(err.Error())) {
		t.Error("IsDeserializationErr matches an unrelated error with the same message")
	}
	if filters.IsDeserializationErr(errors.New(filters.ErrDeserialization.Error())) {
		t.Error("IsDeserializationErr matches an unrelated error with the sentinel's message")
	}
	if filters.IsDeserializationErr(nil) {
		t.Error("IsDeserializationErr(nil) = true")
	}
}

func TestCombinersPanicOnNilFilter(t *testing.T) {
	pass := func(*reflex.Event) (bool, error) { return true, nil }
	for name, build := range map[string]func(...reflex.EventFilter) reflex.EventFilter{
		"AllEventFilters": filters.AllEventFilters,
		"AnyEventFilters": filters.AnyEventFilters,
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				msg, _ := recover().(string)
				if want := "filters: " + name + ": filter 1 is nil"; msg != want {
					t.Errorf("panic %q, want %q", msg, want)
				}
			}()
			build(pass, nil)
		})
	}
}
