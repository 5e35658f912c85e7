// Package bustest provides an in-memory bus.Bus and bus.Provider for unit
// tests of plugins that use the message bus, without sockets or a broker.
package bustest
