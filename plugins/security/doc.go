// Package security is the security plugin (priority security): bearer-token
// authentication and role-based authorization on the agent's HTTP front,
// and the agent's audit log.
//
// Tokens are configured as SHA-256 hashes, or read from a file or an
// environment variable and hashed at once; a presented token is hashed and
// compared in constant time with every configured hash. Role viewer may
// read (GET, HEAD); role admin may also act (POST and the rest). /metrics,
// /livez, /readyz and the AI plugins' readiness (/api/v1/ai-plugins/*/ready)
// stay open unless configured otherwise. With no tokens
// the API is open to loopback clients only. Reload rotates tokens.
//
// The audit log (exporters/audit) records every admin action with who did
// it, every HTTP denial (401 and 403) and plugin lifecycle transitions.
// Records are stored in SQLite, published on audit.<action> and served at
// GET /api/v1/admin/audit. The log is the "audit" service
// (audit.ServiceName, an audit.Recorder) for the plugins that decide
// other things: the bus broker records its permission denials and failed
// logins there, the encryption plugin its key rotations, the ExtManager
// which external plugin registrations and deregistrations it accepted and
// which it refused. No log line becomes an audit record.
package security
