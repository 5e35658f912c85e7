// Package logconsumer is the log_consumer plugin (priority infrastructure):
// it subscribes to logs.* on the message bus, where external plugins and,
// through exporters/logtap, the agent's own slog records are published,
// and persists every record in the embedded SQLite store (exporters/store)
// with retention by age, count and size. Records are sealed with the
// encryption service when that plugin runs. GET /api/v1/admin/logs reads
// them back, filtered by source, minimum level and time.
package logconsumer
