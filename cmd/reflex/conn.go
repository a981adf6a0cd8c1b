package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"flag"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/seed-e488ba2e/reflex/rsql"
)

// Environment variables that give flags their defaults.
const (
	envDSN       = "REFLEX_DSN"
	envEventsDSN = "REFLEX_EVENTS_DSN"
	envToken     = "REFLEX_TOKEN"
)

// dbFlags are the connection and table flags of the commands that read
// tables.
type dbFlags struct {
	dsn, eventsDSN string
	events         string
	cursors        string
	errors         string
	leases         string
	audit          string
	stringCursors  bool
	timeout        time.Duration
}

// tables says which table flags a command has.
type tables struct {
	events, eventsDSN, cursors, errors, leases, audit bool
}

func (f *dbFlags) register(fs *flag.FlagSet, e *env, t tables) {
	fs.StringVar(&f.dsn, "dsn", e.getenv(envDSN), "database `DSN`: mysql://user:pass@tcp(host:3306)/db (or mysql://user:pass@host:3306/db), sqlite:PATH, or postgres://... (default $"+envDSN+")")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "bound on each database operation")
	if t.eventsDSN {
		fs.StringVar(&f.eventsDSN, "events-dsn", e.getenv(envEventsDSN), "`DSN` of the events table's database when it is not the one of --dsn (default $"+envEventsDSN+")")
	}
	if t.events {
		fs.StringVar(&f.events, "events", "events", "events `table`")
	}
	if t.cursors {
		fs.StringVar(&f.cursors, "cursors", "cursors", "cursors `table`")
		fs.BoolVar(&f.stringCursors, "string-cursors", false, "the cursors table holds string cursors (rsql.WithCursorStrings)")
	}
	if t.errors {
		fs.StringVar(&f.errors, "errors", "consumer_errors", "consumer errors `table`")
	}
	if t.leases {
		fs.StringVar(&f.leases, "leases", "leases", "leases `table` that shows which consumers run (\"\" for none; a missing default table means unknown)")
	}
	if t.audit {
		fs.StringVar(&f.audit, "audit", "cursor_audit", "cursor audit `table` (rsql.CursorAuditSchema)")
	}
}

// checkNames refuses table names that are not identifiers.
func (f *dbFlags) checkNames() error {
	for _, n := range []struct{ flag, name string }{
		{"events", f.events}, {"cursors", f.cursors}, {"errors", f.errors}, {"audit", f.audit}, {"leases", f.leases},
	} {
		if n.name == "" {
			continue
		}
		if err := rsql.CheckName(n.name); err != nil {
			return usageErr("--%s: %v", n.flag, err)
		}
	}
	return nil
}

// database is an open database and its dialect.
type database struct {
	*sql.DB
	dialect rsql.Dialect
	// where names the database in messages, without credentials.
	where string
}

// open opens the database of --dsn.
func (f *dbFlags) open(ctx context.Context) (*database, error) {
	if f.dsn == "" {
		return nil, usageErr("no database: give --dsn or set $%s", envDSN)
	}
	if err := f.checkNames(); err != nil {
		return nil, err
	}
	return openDB(ctx, f.dsn, f.timeout)
}

// openEvents opens the database of --events-dsn, or returns db.
func (f *dbFlags) openEvents(ctx context.Context, db *database) (*database, error) {
	if f.eventsDSN == "" {
		return db, nil
	}
	return openDB(ctx, f.eventsDSN, f.timeout)
}

// openDB opens and pings the database of dsn.
func openDB(ctx context.Context, dsn string, timeout time.Duration) (*database, error) {
	driver, name, d, where, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open(driver, name)
	if err != nil {
		return nil, usageErr("bad DSN for %s: %v", where, err)
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, withCode(exitFailure, "cannot connect to %s: %v", where, err)
	}
	return &database{DB: db, dialect: *d, where: where}, nil
}

// parseDSN returns the driver, its data source name, the dialect and a
// description
// without credentials, or a usage error that does not echo the DSN's
// secrets.
func parseDSN(dsn string) (driver, name string, d *rsql.Dialect, where string, err error) {
	switch {
	case strings.HasPrefix(dsn, "mysql://"):
		cfg, err := mysqlConfig(strings.TrimPrefix(dsn, "mysql://"))
		if err != nil {
			return "", "", nil, "", err
		}
		where = "mysql at " + cfg.Addr + "/" + cfg.DBName
		return "mysql", cfg.FormatDSN(), &rsql.MySQL, where, nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		u, err := url.Parse(dsn)
		if err != nil {
			return "", "", nil, "", usageErr("bad PostgreSQL DSN: %v", redact(err))
		}
		return "pgx", dsn, &rsql.PostgreSQL, "postgres at " + u.Host + u.Path, nil
	}
	path, ok := sqlitePath(dsn)
	if !ok {
		return "", "", nil, "", usageErr("bad DSN: want mysql://..., postgres://... or sqlite:PATH (got one starting %s)", quote(prefix(dsn)))
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() {
		return "", "", nil, "", usageErr("bad DSN: no SQLite database file %s", quote(path))
	}
	name = "file:" + path + "?mode=rw&_pragma=busy_timeout(5000)&_txlock=immediate&_time_format=sqlite"
	return "sqlite", name, &rsql.SQLite, "sqlite " + path, nil
}

// sqlitePath returns the file of a SQLite DSN: sqlite:PATH,
// sqlite://PATH, file:PATH, or a path ending in .db, .sqlite or .sqlite3.
func sqlitePath(dsn string) (string, bool) {
	for _, p := range []string{"sqlite://", "sqlite:", "file:"} {
		if rest, ok := strings.CutPrefix(dsn, p); ok {
			rest, _, _ = strings.Cut(rest, "?")
			return rest, rest != ""
		}
	}
	for _, ext := range []string{".db", ".sqlite", ".sqlite3"} {
		if strings.HasSuffix(dsn, ext) && !strings.Contains(dsn, "://") {
			return dsn, true
		}
	}
	return "", false
}

// mysqlConfig parses a go-sql-driver DSN (user:pass@tcp(host:port)/db) or
// a URL form (user:pass@host:port/db) and sets what the tool needs:
// parseTime, UTC, and the UTC session time zone unless the DSN sets one.
func mysqlConfig(s string) (*mysql.Config, error) {
	var cfg *mysql.Config
	if strings.Contains(s, "(") || strings.HasPrefix(s, "/") || strings.Contains(s, "@/") {
		c, err := mysql.ParseDSN(s)
		if err != nil {
			return nil, usageErr("bad MySQL DSN: %v", redact(err))
		}
		cfg = c
	} else {
		u, err := url.Parse("mysql://" + s)
		if err != nil {
			return nil, usageErr("bad MySQL DSN: %v", redact(err))
		}
		cfg = mysql.NewConfig()
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
		cfg.Net, cfg.Addr = "tcp", u.Host
		if u.Port() == "" {
			cfg.Addr = u.Hostname() + ":3306"
		}
		cfg.DBName = strings.TrimPrefix(u.Path, "/")
		for k, v := range u.Query() {
			if cfg.Params == nil {
				cfg.Params = map[string]string{}
			}
			cfg.Params[k] = v[len(v)-1]
		}
	}
	cfg.ParseTime, cfg.Loc = true, time.UTC
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	if _, ok := cfg.Params["time_zone"]; !ok {
		cfg.Params["time_zone"] = "'+00:00'"
	}
	return cfg, nil
}

// redact keeps errors that quote a DSN from echoing it.
func redact(err error) string {
	s := err.Error()
	if i := strings.Index(s, "@"); i >= 0 {
		return "malformed DSN"
	}
	return s
}

// prefix is the start of s up to its first ':' (at most 16 bytes).
func prefix(s string) string {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i+1]
	}
	if len(s) > 16 {
		s = s[:16]
	}
	return s
}

// grpcFlags are the flags of a connection to a reflex gRPC server.
type grpcFlags struct {
	addr, ca, serverName, token, tokenFile string
	insecure                               bool
}

func (g *grpcFlags) register(fs *flag.FlagSet, e *env) {
	fs.StringVar(&g.addr, "grpc", "", "`address` (host:port) of a reflex gRPC server to read instead of an events table")
	fs.StringVar(&g.ca, "tls-ca", "", "PEM `file` of the certificate authority to trust (default: the system's)")
	fs.StringVar(&g.serverName, "tls-server-name", "", "server `name` to verify in its certificate (default: the address's host)")
	fs.BoolVar(&g.insecure, "insecure", false, "connect without TLS (not with a token)")
	fs.StringVar(&g.token, "token", e.getenv(envToken), "bearer `token` sent on every call (default $"+envToken+")")
	fs.StringVar(&g.tokenFile, "token-file", "", "`file` holding the bearer token")
}

// dial connects to the server of --grpc.
func (g *grpcFlags) dial() (*grpc.ClientConn, error) {
	token := g.token
	if g.tokenFile != "" {
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return nil, usageErr("--token-file: %v", err)
		}
		token = strings.TrimSpace(string(b))
	}
	var opts []grpc.DialOption
	if g.insecure {
		if token != "" {
			return nil, usageErr("a bearer token needs TLS: drop --insecure")
		}
		if g.ca != "" || g.serverName != "" {
			return nil, usageErr("--insecure excludes --tls-ca and --tls-server-name")
		}
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: g.serverName}
		if g.ca != "" {
			pem, err := os.ReadFile(g.ca)
			if err != nil {
				return nil, usageErr("--tls-ca: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, usageErr("--tls-ca: no PEM certificate in %s", quote(g.ca))
			}
			cfg.RootCAs = pool
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	conn, err := grpc.NewClient(g.addr, opts...)
	if err != nil {
		return nil, usageErr("--grpc %s: %v", quote(g.addr), err)
	}
	return conn, nil
}

// bearer sends "authorization: Bearer <token>" on every call, over TLS
// only.
type bearer string

func (t bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// tableErr turns a missing table into a not-found error naming the flag.
func tableErr(flagName, table string, err error) error {
	if errors.Is(err, rsql.ErrSchema) {
		return withCode(exitNotFound, "--%s %s: %v", flagName, table, err)
	}
	return err
}
