package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
)

// Bounds of every YAML file the agent reads: core.yaml and the drop-in
// manifests. The YAML parser allocates a few hundred bytes per input byte
// and much more per level of nesting, so both are checked before parsing.
const (
	// MaxConfigBytes is the largest config file accepted.
	MaxConfigBytes = 1 << 20
	// MaxManifestBytes is the largest drop-in manifest accepted.
	MaxManifestBytes = 64 << 10
	// MaxYAMLDepth is the deepest nesting accepted: levels of indentation
	// and of compact sequences ("- - x") plus flow collections ([...] and
	// {...}) inside them.
	MaxYAMLDepth = 64
	// MaxYAMLEntries is the most entries (keys and list items) accepted in
	// one file; the parser spends about a kilobyte on each.
	MaxYAMLEntries = 20_000
	// MaxMappingKeys is the most keys of one block mapping: the parser's
	// work grows with their square (4000 keys cost 72 MB, 49000 9 GB).
	MaxMappingKeys = 1000
)

// ReadFile reads a file that config names (core.yaml, a manifest, a key) of
// at most limit bytes. Only a regular file is read (a symlink is followed,
// and its target must be one): a device or a named pipe is an error at
// once, without blocking on it. Errors are *ConfigError naming path, and
// wrap the file system's error (errors.Is(err, fs.ErrNotExist) works).
func ReadFile(path string, limit int64) ([]byte, error) {
	// O_NONBLOCK: opening a named pipe would otherwise wait for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &ConfigError{File: path, Msg: "cannot read: " + err.Error(), cause: err}
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, &ConfigError{File: path, Msg: "cannot read: " + err.Error(), cause: err}
	}
	if !info.Mode().IsRegular() {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("not a regular file (%s); want a YAML file", fileKind(info.Mode()))}
	}
	if info.Size() > limit {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("file is %d bytes, more than the limit of %d", info.Size(), limit)}
	}
	// The file may grow after Stat: read at most one byte past the limit.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &ConfigError{File: path, Msg: "cannot read: " + err.Error(), cause: err}
	}
	if int64(len(data)) > limit {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("file is more than the limit of %d bytes", limit)}
	}
	return data, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.Type().String()
}

var bom = []byte("\xef\xbb\xbf")

// parseYAML parses one YAML document after the checks that keep the parser
// bounded: no byte-order mark, flow nesting at most MaxYAMLDepth, one
// document. The body is nil for an empty document.
func parseYAML(name string, data []byte) (ast.Node, error) {
	if bytes.HasPrefix(data, bom) {
		return nil, &ConfigError{File: name, Line: 1, Column: 1, Msg: "file starts with a UTF-8 byte-order mark; save it as UTF-8 without one"}
	}
	if line, col, problem := scanYAML(data, MaxYAMLDepth, MaxYAMLEntries); problem != "" {
		return nil, &ConfigError{File: name, Line: line, Column: col, Msg: problem}
	}
	f, err := parser.Parse(lexer.Tokenize(string(data)), 0)
	if err != nil {
		return nil, yamlError(name, "", nil, err)
	}
	var body ast.Node
	for i, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if body != nil {
			e := &ConfigError{File: name, Msg: "more than one YAML document; put everything in one (remove the --- line)"}
			if tk := f.Docs[i].Start; tk != nil && tk.Position != nil {
				e.Line, e.Column = tk.Position.Line, tk.Position.Column
			} else if tk := doc.Body.GetToken(); tk != nil && tk.Position != nil {
				e.Line, e.Column = tk.Position.Line, tk.Position.Column
			}
			return nil, e
		}
		body = doc.Body
	}
	if _, isNull := body.(*ast.NullNode); isNull {
		body = nil
	}
	return body, nil
}

// scanYAML returns where and how the YAML nests deeper than maxDepth or
// holds more than maxEntries keys and list items, or 0, 0, "". It reads the
// bytes once and allocates at most maxDepth levels, so it runs before the
// parser. Block levels are the columns at which
// lines and compact entries ("- - x", "? ") start, deeper than the ones
// before them; flow levels are brackets. It skips comments, quoted scalars
// and block scalars; in block context a bracket opens a collection only
// where a value starts, as in YAML, so "a[1" in a plain scalar is text.
func scanYAML(data []byte, maxDepth, maxEntries int) (int, int, string) {
	line, lineStart := 1, 0
	entries := 0
	tooDeep := fmt.Sprintf("nested more than %d levels deep", maxDepth)
	tooMany := func() (int, int, string) {
		return line, 1, fmt.Sprintf("more than %d keys and list items", maxEntries)
	}
	depth := 0 // flow
	// The open block levels, by increasing column, with the keys seen at
	// each: the parser's cost grows with the square of a block mapping's
	// keys.
	type level struct{ col, keys int }
	var block []level
	tooManyKeys := fmt.Sprintf("more than %d keys in one mapping", MaxMappingKeys)
	// push opens (or continues) the level at col; key says the line there
	// is a mapping key, not a list item.
	push := func(col int, key bool) string {
		for len(block) > 0 && block[len(block)-1].col > col {
			block = block[:len(block)-1]
		}
		if len(block) == 0 || block[len(block)-1].col < col {
			block = append(block, level{col: col})
		}
		if key {
			if block[len(block)-1].keys++; block[len(block)-1].keys > MaxMappingKeys {
				return tooManyKeys
			}
		}
		if len(block)+depth > maxDepth {
			return tooDeep
		}
		return ""
	}
	tokenStart := true // at a place where a value may start
	blockIndent := -1  // >= 0: inside a block scalar of lines indented more
	indent := 0        // indentation of the current line
	atLineStart := true
	for i := 0; i < len(data); i++ {
		c := data[i]
		if atLineStart {
			// Measure the indentation; inside a block scalar skip the
			// lines indented more than its key (and blank ones).
			j := i
			for j < len(data) && data[j] == ' ' {
				j++
			}
			indent = j - i
			if blockIndent >= 0 {
				if j >= len(data) || data[j] == '\n' || data[j] == '\r' || indent > blockIndent {
					for i < len(data) && data[i] != '\n' {
						i++
					}
					if i < len(data) {
						line, lineStart = line+1, i+1
					}
					continue
				}
				blockIndent = -1
			}
			atLineStart = false
			if depth == 0 {
				tokenStart = true
				if indent == 0 && (bytes.HasPrefix(data[j:], []byte("---")) || bytes.HasPrefix(data[j:], []byte("..."))) {
					// A document marker starts a document: a cost, and no level.
					if entries++; entries > maxEntries {
						return tooMany()
					}
					block = block[:0]
				} else if j < len(data) && data[j] != '\n' && data[j] != '\r' && data[j] != '#' {
					entry := (data[j] == '-' || data[j] == '?') && (j+1 == len(data) || data[j+1] == ' ' || data[j+1] == '\n' || data[j+1] == '\r')
					if problem := push(indent, !entry); problem != "" {
						return line, indent + 1, problem
					}
				}
			}
			i = j - 1
			continue
		}
		switch c {
		case '\n':
			line, lineStart, atLineStart = line+1, i+1, true
			continue
		case ' ', '\t', '\r':
			continue
		case '#':
			if i == lineStart || data[i-1] == ' ' || data[i-1] == '\t' {
				for i+1 < len(data) && data[i+1] != '\n' {
					i++
				}
				continue
			}
		case '"', '\'':
			if depth > 0 || tokenStart {
				i = skipQuoted(data, i, &line, &lineStart)
				tokenStart = false
				continue
			}
		case '[', '{':
			if depth > 0 || tokenStart {
				depth++
				if depth+len(block) > maxDepth {
					return line, i - lineStart + 1, tooDeep
				}
				if entries++; entries > maxEntries {
					return tooMany()
				}
				continue
			}
		case ']', '}':
			if depth > 0 {
				depth--
				continue
			}
		case '|', '>':
			if depth == 0 && tokenStart {
				blockIndent = indent
				for i+1 < len(data) && data[i+1] != '\n' {
					i++
				}
				continue
			}
		case '-', '?', ':':
			// "- ", "? " and ": " (or at the end of a line) start a value;
			// an entry after another on the same line nests in it.
			if depth == 0 && (c == ':' || tokenStart) && (i+1 == len(data) || data[i+1] == ' ' || data[i+1] == '\n' || data[i+1] == '\r') {
				if c != ':' && i-lineStart > indent {
					if problem := push(i-lineStart, false); problem != "" {
						return line, i - lineStart + 1, problem
					}
				}
				if entries++; entries > maxEntries {
					return tooMany()
				}
				tokenStart = true
				continue
			}
		case ',':
			if depth > 0 {
				if entries++; entries > maxEntries {
					return tooMany()
				}
				continue
			}
		case '&', '!':
			// An anchor or tag in front of a value: the value starts after it.
			if depth == 0 && tokenStart {
				for i+1 < len(data) && data[i+1] != ' ' && data[i+1] != '\n' {
					i++
				}
				continue
			}
		}
		if depth == 0 {
			tokenStart = false
		}
	}
	return 0, 0, ""
}

// skipQuoted returns the index of the quote that closes the scalar opened
// at data[i], or the last index when it is not closed.
func skipQuoted(data []byte, i int, line, lineStart *int) int {
	q := data[i]
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\n':
			*line, *lineStart = *line+1, i+1
		case '\\':
			if q == '"' && i+1 < len(data) && data[i+1] != '\n' {
				i++ // an escaped character; an escaped line break is counted above
			}
		case q:
			if q == '\'' && i+1 < len(data) && data[i+1] == '\'' {
				i++ // '' is an escaped quote
				continue
			}
			return i
		}
	}
	return len(data) - 1
}
