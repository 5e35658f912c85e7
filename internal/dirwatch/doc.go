// Package dirwatch calls a function when what is in a directory changes.
// It watches the directory rather than files in it, so editors that write a
// new file and rename it over the old one, and Kubernetes ConfigMap symlink
// swaps, are seen; it waits for a burst of events to settle before calling;
// and it copes with a directory that does not exist yet or goes away.
package dirwatch
