package rsql

import (
	"errors"
	"fmt"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrWrongDialect is wrapped by the error of a table's statement that the
// database refused because it is of another engine than the table's
// dialect: a MySQL table (the default) on a PostgreSQL database, or the
// other way round. The error names both and the option to set.
var ErrWrongDialect = errors.New("rsql: the table's dialect is not the database's")

// engineOf returns the name of the dialect whose driver returned err, ""
// if err is not a database error of a known driver.
func engineOf(err error) string {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return mysqlDialect{}.name()
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pgDialect{}.name()
	}
	// modernc.org/sqlite's *Error, which rsql does not import.
	var ce interface{ Code() int }
	if errors.As(err, &ce) {
		return sqliteDialect{}.name()
	}
	return ""
}

// dialectVars are the exported names of the dialects, for messages.
var dialectVars = map[string]string{"mysql": "MySQL", "postgres": "PostgreSQL", "sqlite": "SQLite"}

// checkEngine returns err, wrapped with ErrWrongDialect and what to do if
// the database that returned it is not of dialect d.
func checkEngine(d dialect, err error) error {
	e := engineOf(err)
	if e == "" || e == d.name() {
		return err
	}
	return fmt.Errorf("%w: the table has dialect %s but the database is %s (give the table's dialect option, "+
		"for example rsql.WithEventsDialect(rsql.%s)): %w", ErrWrongDialect, d.name(), e, dialectVars[e], err)
}
