package agent

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// ConfigError is one problem in a config, located by file, line and key.
type ConfigError struct {
	File   string
	Line   int // 0 when the problem has no line (an environment variable)
	Column int
	Key    string
	Msg    string

	cause  error // what the file system said, for errors.Is
	decode bool  // from Section.Decode (see isDecodeError)
}

// Unwrap returns the file system's error, if any (os.ErrNotExist, say).
func (e *ConfigError) Unwrap() error { return e.cause }

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func pluginPath(name string) string { return "core.api_gateway.plugins." + name }

func joinKey(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	case strings.HasPrefix(b, "["):
		return a + b // an index: targets[2]
	}
	return a + "." + b
}

func errorAt(tk *token.Token, key, format string, args ...any) *ConfigError {
	e := &ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)}
	if tk != nil && tk.Position != nil {
		e.Line, e.Column = tk.Position.Line, tk.Position.Column
	}
	return e
}

// yamlError turns a go-yaml error into a ConfigError with file, line and the
// full key path of the offending node below base.
func yamlError(file, base string, root ast.Node, err error) error {
	var ce *ConfigError
	if errors.As(err, &ce) {
		out := *ce
		if out.File == "" {
			out.File = file
		}
		if out.Key == "" {
			out.Key = joinKey(base, keyAt(root, out.Line, out.Column))
		}
		return &out
	}
	var ye yaml.Error
	if errors.As(err, &ye) {
		var got string
		if tk := ye.GetToken(); tk != nil {
			got = tk.Value
		}
		e := &ConfigError{File: file, Msg: plainMessage(ye.GetMessage(), got)}
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			e.Line, e.Column = tk.Position.Line, tk.Position.Column
			e.Key = joinKey(base, keyAt(root, e.Line, e.Column))
		}
		return e
	}
	// A value's own unmarshaler failed (a Prometheus SD config's checks,
	// say): the error is about the value at root.
	e := &ConfigError{File: file, Key: base, Msg: err.Error()}
	if root != nil {
		if tk := root.GetToken(); tk != nil && tk.Position != nil {
			e.Line, e.Column = tk.Position.Line, tk.Position.Column
		}
	}
	return e
}

func asConfigError(file, key string, n ast.Node, err error) error {
	var ce *ConfigError
	if errors.As(err, &ce) {
		return err
	}
	e := &ConfigError{File: file, Key: key, Msg: err.Error()}
	if n != nil {
		e.Line, e.Column = n.GetToken().Position.Line, n.GetToken().Position.Column
	}
	return e
}

// lookup finds the node at a dotted key path below n; a part may index a
// sequence ("targets[2].endpoint"). For a mapping key it returns the key
// node: that is where a reader looks.
func lookup(n ast.Node, key string) ast.Node {
	if n == nil || key == "" {
		return n
	}
	parts := strings.Split(key, ".")
	cur := n
	for i, part := range parts {
		name, index := part, -1
		if open := strings.IndexByte(part, '['); open > 0 && strings.HasSuffix(part, "]") {
			if v, err := strconv.Atoi(part[open+1 : len(part)-1]); err == nil {
				name, index = part[:open], v
			}
		}
		m, ok := cur.(*ast.MappingNode)
		if !ok {
			return nil
		}
		var keyNode, next ast.Node
		for _, kv := range m.Values {
			if kv.Key.String() == name {
				keyNode, next = kv.Key, kv.Value
			}
		}
		if next == nil {
			return nil
		}
		if index >= 0 {
			seq, ok := next.(*ast.SequenceNode)
			if !ok || index >= len(seq.Values) {
				return keyNode
			}
			next = seq.Values[index]
			keyNode = next
		}
		if i == len(parts)-1 {
			return keyNode
		}
		cur = next
	}
	return cur
}

// keyAt returns the dotted key path of the mapping key or value at line:col.
func keyAt(n ast.Node, line, col int) string {
	var walk func(n ast.Node, path string) (string, bool)
	walk = func(n ast.Node, path string) (string, bool) {
		switch v := n.(type) {
		case *ast.MappingNode:
			for _, kv := range v.Values {
				p := joinKey(path, kv.Key.String())
				kt := kv.Key.GetToken().Position
				if kt.Line == line && kt.Column == col {
					return p, true
				}
				if kv.Value != nil {
					vt := kv.Value.GetToken().Position
					if vt.Line == line && vt.Column == col {
						return p, true
					}
					if r, ok := walk(kv.Value, p); ok {
						return r, true
					}
				}
			}
		case *ast.MappingValueNode:
			return walk(&ast.MappingNode{Values: []*ast.MappingValueNode{v}}, path)
		case *ast.SequenceNode:
			for i, item := range v.Values {
				p := fmt.Sprintf("%s[%d]", path, i)
				t := item.GetToken().Position
				if t.Line == line && t.Column == col {
					return p, true
				}
				if r, ok := walk(item, p); ok {
					return r, true
				}
			}
		}
		return "", false
	}
	if n == nil {
		return ""
	}
	p, _ := walk(n, "")
	return p
}
