// Package filters builds [reflex.EventFilter] values for use with
// [reflex.WithEventFilter].
//
// [AllEventFilters] and [AnyEventFilters] combine filters with "and" and
// "or"; [MetadataEventFilter] decodes an event's MetaData and filters on the
// decoded value. Every filter here is safe for concurrent use if the
// filters, deserializers and data filters it is built from are.
package filters
