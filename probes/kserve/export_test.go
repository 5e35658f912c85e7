package kserve

// ReadSignals is readSignals, with the metrics port a test's server has.
var ReadSignals = readSignals
