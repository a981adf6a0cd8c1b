package rsql

import (
	"errors"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// dialect hides every difference between SQL engines. Callers build
// queries through it and never branch on the engine. MySQL/MariaDB is the
// only dialect so far; SQLite and PostgreSQL are added by implementing it.
type dialect interface {
	// quote returns a validated identifier quoted for the engine.
	quote(ident string) string
	// isDuplicateKey reports whether err is a unique-key violation.
	isDuplicateKey(err error) bool
}

type mysqlDialect struct{}

var defaultDialect dialect = mysqlDialect{}

func (mysqlDialect) quote(ident string) string {
	parts := strings.Split(unquote(ident), ".")
	for i, p := range parts {
		parts[i] = "`" + p + "`"
	}
	return strings.Join(parts, ".")
}

// mysqlErrDupEntry is ER_DUP_ENTRY.
const mysqlErrDupEntry = 1062

func (mysqlDialect) isDuplicateKey(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == mysqlErrDupEntry
}
