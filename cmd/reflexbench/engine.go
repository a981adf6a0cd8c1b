package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/seed-e488ba2e/reflex/rsql"
)

// engine is the database server that reflexbench measures: every
// difference between MySQL/MariaDB and PostgreSQL in the workloads and
// their baselines is here.
type engine struct {
	name    string // "mysql" or "postgres", the -engine flag
	driver  string
	dialect rsql.Dialect
	// env is the environment variable of the default DSN, script the
	// script that starts a throw-away server.
	env, script string
}

var (
	mysqlEngine    = engine{name: "mysql", driver: "mysql", dialect: rsql.MySQL, env: "DB_TEST_URI", script: "scripts/mariadb.sh"}
	postgresEngine = engine{name: "postgres", driver: "pgx", dialect: rsql.PostgreSQL, env: "DB_TEST_PG_URI", script: "scripts/postgres.sh"}
)

// engineNamed returns the engine called name.
func engineNamed(name string) (engine, error) {
	switch name {
	case "mysql", "mariadb":
		return mysqlEngine, nil
	case "postgres", "postgresql":
		return postgresEngine, nil
	}
	return engine{}, fmt.Errorf("unknown engine %q (want mysql or postgres)", name)
}

// engineOfDSN returns the engine a DSN is for: PostgreSQL for a
// postgres:// URL, else MySQL.
func engineOfDSN(dsn string) engine {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return postgresEngine
	}
	return mysqlEngine
}

// pg reports whether e is PostgreSQL.
func (e engine) pg() bool { return e.name == postgresEngine.name }

// createDB creates the database name on the server of rootDSN (MySQL: a
// DSN ending in "/"; PostgreSQL: a URL of any database) and returns the
// DSN of the new database.
func (e engine) createDB(ctx context.Context, root *sql.DB, rootDSN, name string) (string, error) {
	if _, err := root.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	if e.pg() {
		u, err := url.Parse(rootDSN)
		if err != nil {
			return "", err
		}
		u.Path = "/" + name
		q := u.Query()
		q.Set("timezone", "UTC")
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	cfg, err := mysql.ParseDSN(rootDSN + name)
	if err != nil {
		return "", err
	}
	cfg.ParseTime, cfg.Loc = true, time.UTC
	cfg.Params = map[string]string{"time_zone": "'+00:00'"}
	return cfg.FormatDSN(), nil
}

// dropDB drops the database name.
func (e engine) dropDB(ctx context.Context, root *sql.DB, name string) {
	q := "DROP DATABASE " + name
	if e.pg() {
		q += " WITH (FORCE)"
	}
	_, _ = root.ExecContext(ctx, q)
}

// checkRoot checks the DSN's form.
func (e engine) checkRoot(dsn string) error {
	if !e.pg() && !strings.HasSuffix(dsn, "/") {
		return fmt.Errorf("DSN %q must end in \"/\"", dsn)
	}
	return nil
}

// q returns query, written with ? markers, for e.
func (e engine) q(query string) string {
	if !e.pg() {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// now is e's current time with microseconds, as rsql writes it.
func (e engine) now() string {
	if e.pg() {
		return "statement_timestamp()"
	}
	return "now(6)"
}

// eventsDDL is the DDL of a benchmark events table: rsql's default
// columns and a metadata column.
func (e engine) eventsDDL(name string) string {
	if e.pg() {
		return `CREATE TABLE ` + name + ` (
		id bigint GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY,
		foreign_id varchar(255) NOT NULL,
		"timestamp" timestamptz NOT NULL,
		type integer NOT NULL,
		metadata bytea NULL)`
	}
	return `CREATE TABLE ` + name + ` (
		id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
		foreign_id varchar(255) NOT NULL,
		timestamp datetime(6) NOT NULL,
		type int NOT NULL,
		metadata blob NULL
	) ENGINE=InnoDB`
}

// dataDDL is the DDL of W1's data table.
func (e engine) dataDDL(name string) string {
	if e.pg() {
		return "CREATE TABLE " + name + " (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name varchar(255) NOT NULL)"
	}
	return "CREATE TABLE " + name + " (id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, name varchar(255) NOT NULL) ENGINE=InnoDB"
}

// serverInfo reads the server version and durability settings.
func (e engine) serverInfo(ctx context.Context, db *sql.DB) map[string]string {
	info := map[string]string{}
	var v string
	if db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v) == nil {
		info["version"] = v
	}
	if e.pg() {
		for _, name := range []string{"fsync", "synchronous_commit", "shared_buffers", "max_connections"} {
			var val string
			if db.QueryRowContext(ctx, "SHOW "+name).Scan(&val) == nil {
				info[name] = val
			}
		}
		return info
	}
	for _, name := range []string{"innodb_flush_log_at_trx_commit", "sync_binlog", "log_bin", "innodb_buffer_pool_size", "innodb_doublewrite"} {
		var n, val string
		if db.QueryRowContext(ctx, "SHOW GLOBAL VARIABLES LIKE '"+name+"'").Scan(&n, &val) == nil {
			info[name] = val
		}
	}
	return info
}

// selects returns a count of the SELECT statements run: the server's
// Com_select on MySQL; on PostgreSQL the index and sequential scans of
// table (every query of rsql on an events table is one scan). PostgreSQL
// counts a session's statements when it ends (or about once a second):
// close the pool that ran them first.
func (e engine) selects(ctx context.Context, db *sql.DB, table string) (int64, error) {
	var n int64
	if e.pg() {
		err := db.QueryRowContext(ctx, "SELECT COALESCE(idx_scan, 0) + COALESCE(seq_scan, 0) FROM pg_stat_user_tables WHERE relname = $1", table).Scan(&n)
		return n, err
	}
	var name string
	err := db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Com_select'").Scan(&name, &n)
	return n, err
}

// writes returns a count of the writes run: the server's Com_update and
// Com_insert on MySQL; on PostgreSQL the rows inserted and updated in
// table (one per statement in W6). As for selects, close the pool that
// ran them first.
func (e engine) writes(ctx context.Context, db *sql.DB, table string) (int64, error) {
	var total int64
	if e.pg() {
		err := db.QueryRowContext(ctx, "SELECT COALESCE(n_tup_ins, 0) + COALESCE(n_tup_upd, 0) FROM pg_stat_user_tables WHERE relname = $1", table).Scan(&total)
		return total, err
	}
	for _, v := range []string{"Com_update", "Com_insert"} {
		var name string
		var n int64
		if err := db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE '"+v+"'").Scan(&name, &n); err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}
