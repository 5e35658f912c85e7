package probes

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// MaxLineBytes bounds one line of a streamed answer.
const MaxLineBytes = 1 << 20

// ErrStopLines, returned by the function given to ReadLines, ends the
// read without an error.
var ErrStopLines = errors.New("stop reading lines")

// ReadLines calls fn with each line of r, without its line ending, until
// fn returns an error, r ends or r fails. It is the line reader of every
// streamed answer (server-sent events, NDJSON). Only whole lines reach fn:
// when r fails (a bound of Do, a reset, a deadline) the part of a line read
// before it is dropped and the error returned, and a last line without a
// newline counts only when r ends cleanly. A line longer than MaxLineBytes
// is a *DecodeError wrapping ErrTooLarge. fn must not keep the slice.
func ReadLines(r io.Reader, fn func(line []byte) error) error {
	br := bufio.NewReaderSize(r, 4096)
	var long []byte
	for {
		frag, err := br.ReadSlice('\n')
		line := frag
		if len(long) > 0 || errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, frag...)
			line = long
		}
		if len(line) > MaxLineBytes {
			return &DecodeError{What: "stream", Err: fmt.Errorf("%w: line longer than %d bytes", ErrTooLarge, MaxLineBytes)}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == nil || (err == io.EOF && len(line) > 0) {
			if ferr := fn(bytes.TrimRight(line, "\r\n")); ferr != nil {
				if errors.Is(ferr, ErrStopLines) {
					return nil
				}
				return ferr
			}
		}
		long = long[:0]
		switch {
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
}
