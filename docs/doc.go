// Package docs holds the project's own documentation beside the README:
// architecture.md, the map of the tree and its data flows,
// dependencies.md, why each dependency is there and how the code works
// around what is broken in it, and engines.md, which series of each AI
// server's own metrics and status endpoints are read and what they mean.
// It has no Go code of its own; its tests
// check that dependencies.md names every direct requirement of go.mod,
// that the tree keeps architecture.md's import rule, that the documents'
// relative links resolve, and that nothing in the repository points at
// files outside it.
package docs
