package faulttest_test

import (
	"io"
	"log"
	"os"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// TestMain silences the MySQL driver's own log of broken connections:
// every fault here breaks connections on purpose, and the tests check what
// the library reports instead.
func TestMain(m *testing.M) {
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
	os.Exit(m.Run())
}
