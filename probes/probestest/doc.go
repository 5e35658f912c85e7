// Package probestest holds fakes for the tests of the probes and of the
// packages that use them: a fake `ollama serve` with runner children.
package probestest
