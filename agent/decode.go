package agent

import (
	"encoding"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	yamlv2 "go.yaml.in/yaml/v2"
)

// maxDecodeErrors bounds the problems one decode reports.
const maxDecodeErrors = 20

// decodeAll decodes node into v (a pointer) key by key, so that every
// unknown key and every value of the wrong type is reported, not only the
// first. Struct fields are matched as go-yaml matches them (the yaml tag,
// else the json tag, else the lower-cased name); values that are not
// structs, and structs with their own unmarshaler, are decoded by go-yaml.
// base is the key path of node, for messages.
func decodeAll(file, base string, node ast.Node, v any) []error {
	if hasAliases(node) {
		// Anchors resolve across the whole document: decode it whole.
		if err := yaml.NodeToValue(node, v, yaml.DisallowUnknownField()); err != nil {
			return []error{yamlError(file, base, node, err)}
		}
		return nil
	}
	d := &decoder{file: file}
	d.value(base, node, reflect.ValueOf(v))
	return d.errs
}

type decoder struct {
	file string
	errs []error
}

func (d *decoder) add(err error) {
	if len(d.errs) < maxDecodeErrors {
		d.errs = append(d.errs, err)
	} else if len(d.errs) == maxDecodeErrors {
		d.errs = append(d.errs, &ConfigError{File: d.file, Msg: fmt.Sprintf("more problems follow; fix these %d first", maxDecodeErrors)})
	}
}

// value decodes node into the pointer rv.
func (d *decoder) value(path string, node ast.Node, rv reflect.Value) {
	t := rv.Type().Elem()
	if t.Kind() == reflect.Pointer {
		if _, null := node.(*ast.NullNode); null {
			rv.Elem().Set(reflect.Zero(t))
			return
		}
		// Decode into a copy of what it points at: the pointee may be
		// shared with a default.
		fresh := reflect.New(t.Elem())
		if !rv.Elem().IsNil() {
			fresh.Elem().Set(rv.Elem().Elem())
		}
		d.value(path, node, fresh)
		rv.Elem().Set(fresh)
		return
	}
	m, isMap := node.(*ast.MappingNode)
	target := rv
	if prometheusType(t) {
		if err := decodePrometheus(node, rv); err != nil {
			d.add(yamlError(d.file, path, node, err))
		}
		return
	}
	if customDecoder(target) {
		if err := yaml.NodeToValue(node, rv.Interface(), yaml.DisallowUnknownField()); err != nil {
			d.add(yamlError(d.file, path, node, err))
		}
		return
	}
	if t.Kind() == reflect.Map && t.Key().Kind() == reflect.String && isMap {
		d.mapping(path, m, rv.Elem())
		return
	}
	if seq, ok := node.(*ast.SequenceNode); ok && t.Kind() == reflect.Slice {
		out := reflect.MakeSlice(t, len(seq.Values), len(seq.Values))
		for i, item := range seq.Values {
			d.value(fmt.Sprintf("%s[%d]", path, i), item, out.Index(i).Addr())
		}
		rv.Elem().Set(out)
		return
	}
	if t.Kind() != reflect.Struct || !isMap {
		if err := yaml.NodeToValue(node, rv.Interface(), yaml.DisallowUnknownField()); err != nil {
			d.add(yamlError(d.file, path, node, err))
		}
		return
	}
	fields := structFields(t)
	for _, kv := range m.Values {
		key := keyText(kv.Key)
		f, ok := fields[key]
		if !ok {
			e := errorAt(kv.Key.GetToken(), joinKey(path, key), "unknown key %q", key)
			e.File = d.file
			known := slices.Sorted(maps.Keys(fields))
			if s := closest(key, known); s != "" {
				e.Msg += fmt.Sprintf("; did you mean %q?", s)
			} else if len(known) <= 12 {
				e.Msg += "; known keys: " + strings.Join(known, ", ")
			}
			d.add(e)
			continue
		}
		d.value(joinKey(path, key), kv.Value, target.Elem().FieldByIndex(f).Addr())
	}
}

// mapping decodes the entries of m one by one into a new map that replaces
// mv, as go-yaml does.
func (d *decoder) mapping(path string, m *ast.MappingNode, mv reflect.Value) {
	mv.Set(reflect.MakeMapWithSize(mv.Type(), len(m.Values)))
	et := mv.Type().Elem()
	for _, kv := range m.Values {
		key := keyText(kv.Key)
		elem := reflect.New(et)
		n := len(d.errs)
		d.value(joinKey(path, key), kv.Value, elem)
		if len(d.errs) == n {
			mv.SetMapIndex(reflect.ValueOf(key).Convert(mv.Type().Key()), elem.Elem())
		}
	}
}

// keyText is a mapping key's text, without the quotes of a quoted one.
func keyText(k ast.MapKeyNode) string {
	if sn, ok := k.(*ast.StringNode); ok {
		return sn.Value
	}
	return k.String()
}

// customDecoder reports whether the value at pointer rv decodes itself.
func customDecoder(rv reflect.Value) bool {
	switch rv.Interface().(type) {
	case yaml.NodeUnmarshaler, yaml.NodeUnmarshalerContext, yaml.BytesUnmarshaler, yaml.BytesUnmarshalerContext,
		yaml.InterfaceUnmarshaler, yaml.InterfaceUnmarshalerContext, encoding.TextUnmarshaler:
		return true
	}
	return false
}

// prometheusType reports whether t is one of Prometheus' config types
// (prometheus/common's HTTPClientConfig, the discovery and relabel
// configs): their UnmarshalYAML takes yaml.v2's callback.
func prometheusType(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && strings.HasPrefix(t.PkgPath(), "github.com/prometheus/") &&
		reflect.PointerTo(t).Implements(reflect.TypeFor[interface{ UnmarshalYAML(func(any) error) error }]())
}

// decodePrometheus decodes node into rv (a pointer to one of Prometheus'
// config types) with its own unmarshaler, through go-yaml, whose errors
// name the line and key. Those types are written for yaml.v2, and
// http_config's http_headers inlines a map, which go-yaml cannot decode
// (it panics): then the value is decoded with yaml.v2, as Prometheus
// decodes it, strictly.
func decodePrometheus(node ast.Node, rv reflect.Value) error {
	inlined, err := goYAML(node, rv.Interface())
	if !inlined {
		return err
	}
	fresh := reflect.New(rv.Type().Elem())
	var generic any
	if err := yaml.NodeToValue(node, &generic); err != nil {
		return err
	}
	b, err := yamlv2.Marshal(generic)
	if err != nil {
		return err
	}
	if err := yamlv2.UnmarshalStrict(b, fresh.Interface()); err != nil {
		return err
	}
	rv.Elem().Set(fresh.Elem())
	return nil
}

// goYAML decodes node into v with go-yaml, strictly; inlined reports that
// go-yaml gave up on an inline map.
func goYAML(node ast.Node, v any) (inlined bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			inlined, err = true, fmt.Errorf("go-yaml: %v", r)
		}
	}()
	return false, yaml.NodeToValue(node, v, yaml.DisallowUnknownField())
}

// structFields maps YAML keys to field indexes, inline structs included.
func structFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "" {
			tag = f.Tag.Get("json")
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(","+opts+",", ",inline,") && f.Type.Kind() == reflect.Struct {
			for k, idx := range structFields(f.Type) {
				out[k] = append([]int{i}, idx...)
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = []int{i}
	}
	return out
}

// hasAliases reports whether the tree uses anchors, aliases or merge keys.
func hasAliases(n ast.Node) bool {
	found := false
	ast.Walk(visitFunc(func(n ast.Node) bool {
		switch n.(type) {
		case *ast.AliasNode, *ast.AnchorNode, *ast.MergeKeyNode:
			found = true
		}
		return !found
	}), n)
	return found
}

type visitFunc func(ast.Node) bool

func (f visitFunc) Visit(n ast.Node) ast.Visitor {
	if n == nil || !f(n) {
		return nil
	}
	return f
}

// closest returns the candidate nearest to s when it is a likely typo
// (at most a third of its letters off), or "".
func closest(s string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		if d := distance(s, c); bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 || bestD > max(1, len(s)/3) || bestD >= len(best) {
		return ""
	}
	return best
}

// distance is the Levenshtein distance of a and b, with a transposition
// of neighbours counted as one edit.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// The decoder's messages these rewrite are compiled for at the first
// error, not when the binary starts.
var (
	reIntoGo    = lazyRE(`^cannot (?:unmarshal|use) (.+?) into Go (?:struct field \S+|value) of type (.+?)(?: \( overflow \))?$`)
	reUsedWhere = lazyRE(`^(\S+) was used where (sequence|mapping) is expected$`)
	reUnknown   = lazyRE(`^unknown field "(.*)"$`)
)

func lazyRE(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}

// plainMessage rewrites go-yaml's messages in the words of the config:
// no Go type names. got is the offending value's text, if known.
func plainMessage(m, got string) string {
	if sm := reIntoGo().FindStringSubmatch(m); sm != nil {
		if strings.HasSuffix(m, "( overflow )") {
			return fmt.Sprintf("%s is out of range for %s", describe(sm[1], got), kindWords(sm[2]))
		}
		return fmt.Sprintf("want %s, got %s", kindWords(sm[2]), describe(sm[1], got))
	}
	if sm := reUsedWhere().FindStringSubmatch(m); sm != nil {
		want := "a list"
		if sm[2] == "mapping" {
			want = "a mapping of keys"
		}
		return fmt.Sprintf("want %s, got %s", want, describe(sm[1], got))
	}
	if sm := reUnknown().FindStringSubmatch(m); sm != nil {
		return fmt.Sprintf("unknown key %q", sm[1])
	}
	return m
}

// describe names a value by its text, or by its kind for collections.
func describe(kind, got string) string {
	switch {
	case strings.HasPrefix(kind, "[]") || kind == "sequence":
		return "a list"
	case strings.HasPrefix(kind, "map[") || kind == "mapping":
		return "a mapping"
	case got != "":
		if len(got) > 40 {
			got = got[:40] + "…"
		}
		return fmt.Sprintf("%q", got)
	}
	return kind
}

// kindWords names a Go type as a config reader knows it.
func kindWords(t string) string {
	switch {
	case strings.HasPrefix(t, "int"):
		return "an integer"
	case strings.HasPrefix(t, "uint"):
		return "a non-negative integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	case strings.HasPrefix(t, "*"):
		return kindWords(t[1:])
	}
	return "a mapping of keys"
}

// nodeWords names a YAML value for a message: its text, or its kind for a
// collection.
func nodeWords(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.NullNode:
		return "nothing"
	}
	return describe("", n.String())
}
