package agent

import (
	"sync"
	"weak"

	"github.com/goccy/go-yaml/ast"
)

// configSource is where a plugin's section of a config file is: the file's
// text and the plugin's name. The parsed tree is made again when a decode,
// an error's line or a comparison wants it, and kept only while something
// holds it (a weak pointer), so a config that runs for months holds its
// text, not the tree, which for a section of 1000 targets is ten times
// larger.
type configSource struct {
	name   string // the file, for messages
	data   []byte // the file's text, shared by its sections
	plugin string

	mu   sync.Mutex
	tree weak.Pointer[ast.MappingNode]
}

// section returns the plugin's own keys, parsed from the text; nil if the
// text no longer parses or holds no such section, which cannot happen for
// text that parsed once.
func (c *configSource) section() ast.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.tree.Value(); m != nil {
		return m
	}
	root, err := parseYAML(c.name, c.data)
	if err != nil {
		return nil
	}
	m, ok := valueAt(root, "core", "api_gateway", "plugins", c.plugin).(*ast.MappingNode)
	if !ok {
		return nil
	}
	own := ownKeys(m)
	if own == nil {
		return nil
	}
	c.tree = weak.Make(own)
	return own
}

// valueAt returns the value at a path of mapping keys below n, or nil.
func valueAt(n ast.Node, keys ...string) ast.Node {
	for _, k := range keys {
		m, ok := n.(*ast.MappingNode)
		if !ok {
			return nil
		}
		n = nil
		for _, kv := range m.Values {
			if kv.Key.String() == k {
				n = kv.Value
			}
		}
		for { // "key: &name" and "key: !tag" hold the mapping below
			if a, ok := n.(*ast.AnchorNode); ok {
				n = a.Value
			} else if t, ok := n.(*ast.TagNode); ok {
				n = t.Value
			} else {
				break
			}
		}
	}
	return n
}
