// Package store is the agent's embedded history store: a SQLite database
// (modernc.org/sqlite, pure Go) opened in WAL mode, with schema migrations
// kept per owner, retention by age, row count and size, and an optional
// Cipher hook for encrypting records at rest.
//
// It sits in exporters (docs/architecture.md: what leaves the process) and
// knows nothing of plugins or of what is stored: log_consumer keeps log
// records in it, the audit log keeps audit records, and the health engine
// keeps AI-plugin health history. Each owner names its migrations and its
// retention rules; several owners may share one file.
//
//	db, err := store.Open(ctx, "vitals-data/logs.db")
//	err = db.Migrate(ctx, "logs", []store.Migration{{Version: 1, SQL: "CREATE TABLE logs (...)"}})
//	n, err := db.Prune(ctx, store.Retention{Table: "logs", TimeColumn: "ts", MaxAge: 7 * 24 * time.Hour}, time.Now())
package store
