// Package audit is the agent's audit log: who did what, when, to what, and
// with which outcome. Records go to a table in the embedded store
// (exporters/store) through a bounded queue, so recording never blocks a
// request, and to an optional publish hook (the security plugin publishes
// them on the bus as audit.<action>). The security plugin owns the log and
// provides it to other plugins as the "audit" service.
package audit
