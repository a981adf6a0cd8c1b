// Package rsqltest creates the tables of package rsql for tests, in the
// SQL dialect of the database's driver. It is a separate package so that
// rsql itself never imports testing.
package rsqltest
