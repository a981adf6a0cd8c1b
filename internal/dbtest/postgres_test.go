package dbtest_test

import (
	"testing"

	"github.com/seed-e488ba2e/reflex/internal/dbtest"
)

func TestOpenPG(t *testing.T) {
	db := dbtest.OpenPG(t)
	var tz string
	if err := db.QueryRowContext(t.Context(), "SHOW timezone").Scan(&tz); err != nil {
		t.Fatal(err)
	}
	if tz != "UTC" {
		t.Errorf("session time zone = %q, want UTC", tz)
	}
}
