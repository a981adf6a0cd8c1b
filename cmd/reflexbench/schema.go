package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// createEvents creates an events table with the default rsql columns and a
// metadata column.
func createEvents(ctx context.Context, eng engine, db *sql.DB, name string) error {
	if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+name); err != nil {
		return err
	}
	_, err := db.ExecContext(ctx, eng.eventsDDL(name))
	return err
}

// preload fills an events table with n events using multi-row inserts.
func preload(ctx context.Context, eng engine, db *sql.DB, table string, n int) error {
	const per = 5000
	for done := 0; done < n; done += per {
		k := min(per, n-done)
		var sb strings.Builder
		sb.WriteString("INSERT INTO " + table + " (foreign_id, timestamp, type, metadata) VALUES ")
		args := make([]any, 0, 2*k)
		for i := range k {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString("(?, " + eng.now() + ", ?, NULL)")
			args = append(args, fmt.Sprint(done+i+1), 1+(done+i)%5)
		}
		if _, err := db.ExecContext(ctx, eng.q(sb.String()), args...); err != nil {
			return fmt.Errorf("preload %s: %w", table, err)
		}
	}
	return nil
}
