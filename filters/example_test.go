package filters_test

import (
	"encoding/json"
	"fmt"

	"github.com/seed-e488ba2e/reflex"
	"github.com/seed-e488ba2e/reflex/filters"
)

func ExampleAllEventFilters() {
	hasMeta := func(e *reflex.Event) (bool, error) { return len(e.MetaData) > 0, nil }
	fromUser7 := func(e *reflex.Event) (bool, error) { return e.ForeignID == "7", nil }
	f := filters.AllEventFilters(hasMeta, fromUser7)

	fmt.Println(f(&reflex.Event{ForeignID: "7", MetaData: []byte("x")}))
	fmt.Println(f(&reflex.Event{ForeignID: "7"}))
	// Output:
	// true <nil>
	// false <nil>
}

func ExampleAnyEventFilters() {
	fromUser7 := func(e *reflex.Event) (bool, error) { return e.ForeignID == "7", nil }
	fromUser9 := func(e *reflex.Event) (bool, error) { return e.ForeignID == "9", nil }
	f := filters.AnyEventFilters(fromUser7, fromUser9)

	fmt.Println(f(&reflex.Event{ForeignID: "9"}))
	fmt.Println(f(&reflex.Event{ForeignID: "8"}))
	// Output:
	// true <nil>
	// false <nil>
}

func ExampleMetadataEventFilter() {
	type headers struct {
		Topic string `json:"topic"`
	}
	decode := func(b []byte) (headers, error) {
		var h headers
		err := json.Unmarshal(b, &h)
		return h, err
	}
	orders := func(h headers) (bool, error) { return h.Topic == "orders", nil }

	f, err := filters.MetadataEventFilter(decode, orders)
	if err != nil {
		fmt.Println(err)
		return
	}
	// Use it with reflex.NewConsumer(name, fn, reflex.WithEventFilter(f)).
	fmt.Println(f(&reflex.Event{MetaData: []byte(`{"topic":"orders"}`)}))
	fmt.Println(f(&reflex.Event{MetaData: []byte(`{"topic":"refunds"}`)}))
	_, err = f(&reflex.Event{MetaData: []byte(`not json`)})
	fmt.Println(filters.IsDeserializationErr(err))
	// Output:
	// true <nil>
	// false <nil>
	// true
}
