// Package validation is the validation plugin (priority middleware): it
// checks requests to the agent's HTTP API before any handler runs
// (methods, content type, body size, JSON shape, path ids, query size) and
// answers the bad ones with a status and a message that says what to fix;
// and it checks bus messages (envelope fields, topic syntax, payload type
// of the well-known topics, size) as the bus_validator service.
//
// The broker applies the validator, then the rate limiter, to every message
// while their plugins run, so a malformed message is dropped and counted
// before any plugin sees it.
package validation
