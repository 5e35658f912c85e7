// Package exepages gives back to the kernel the pages of the agent's own
// executable that start-up mapped and steady state does not use.
//
// A Go binary's text and read-only data are mapped from its file. Package
// initialisation runs code and reads type data in nearly every package of
// the binary, and the kernel maps each such page with its neighbours (fault
// around), so right after start-up most of the file is resident: for the
// agent about 45 MiB of a 58 MiB binary, though what its checks, scrapes
// and reloads run afterwards is a fraction of that. Those pages are clean
// page cache, but while they stay mapped they count in the process's RSS,
// and in the container's working set, where the kernel keeps mapped
// executable pages active.
//
// Release unmaps the executable's read-only mappings once (madvise
// MADV_DONTNEED). Nothing is lost: the pages stay in the page cache, and
// those still in use are mapped again on the next access, at the cost of a
// minor fault each. Writable mappings (the data segment, the heap) are
// never touched.
package exepages
