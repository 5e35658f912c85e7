// Package busv1 is the generated Go code for the message bus wire schema in
// bus.proto: the Envelope that every bus message carries and the messages
// the agent and external plugins exchange (announcements, heartbeats,
// goodbyes, health, alerts, log records, lifecycle events).
//
// Regenerate with proto/generate.sh; proto/check.sh fails when the
// committed code is stale.
package busv1
