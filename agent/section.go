package agent

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/sethvargo/go-envconfig"
)

// Section is a plugin's own part of the config. It can give its parsed YAML
// so that the plugin's decode and validation errors name the file, line and
// full key.
type Section struct {
	node ast.Node      // a section parsed on its own (ParseSection)
	src  *configSource // a section of a config file: parsed again when wanted
	path string        // e.g. core.api_gateway.plugins.message_bus
	file string
	env  *sectionEnv // VITALS_ overrides of the section's keys; nil: none
}

// sectionEnv is where a section's environment overrides come from, and
// which keys they set, so errors about those keys blame the variable.
type sectionEnv struct {
	lookup envconfig.Lookuper
	mu     sync.Mutex
	set    map[string]string // key below the section -> variable
}

func newSectionEnv(lookup envconfig.Lookuper) *sectionEnv {
	return &sectionEnv{lookup: lookup, set: map[string]string{}}
}

// NewSection parses YAML text as a plugin section, for tests and for plugins
// built outside a config file.
func NewSection(yamlText string) (Section, error) {
	s, err := ParseSection("<section>", []byte(yamlText))
	s.path = "section"
	return s, err
}

// ParseSection parses a YAML document of its own (a drop-in manifest, say)
// as a Section, so decoding it reports file, line and key like config does.
func ParseSection(file string, data []byte) (Section, error) {
	s := Section{file: file}
	if strings.TrimSpace(string(data)) == "" {
		return s, nil
	}
	body, err := parseYAML(file, data)
	if err != nil || body == nil {
		return s, err
	}
	if _, ok := body.(*ast.MappingNode); !ok {
		e := errorAt(body.GetToken(), "", "want a mapping of keys, got %s", nodeWords(body))
		e.File = file
		return s, e
	}
	s.node = body
	return s, nil
}

// File returns the file the section was read from.
func (s Section) File() string { return s.file }

// Empty reports whether the section has no keys.
func (s Section) Empty() bool { return s.node == nil && s.src == nil }

// tree returns the section's parsed YAML, nil when it has no keys.
func (s Section) tree() ast.Node {
	if s.src != nil {
		return s.src.section()
	}
	return s.node
}

// Path returns the section's key path in the config.
func (s Section) Path() string { return s.path }

// Decode decodes the section into v, a pointer to a struct that holds the
// defaults. Unknown keys and wrong types are errors naming the key and line.
//
// In a section of a loaded config (LoadFile, Parse), the environment then
// wins over the file, as for the agent settings: a top-level field of v
// tagged `env:"NAME, overwrite"` (go-envconfig) takes the value of
// VITALS_NAME when it is set, and Errorf about that field's key names the
// variable instead of a line. Sections made otherwise (NewSection,
// ParseSection, the zero Section) read no environment.
func (s Section) Decode(v any) error {
	var errs []error
	if n := s.tree(); n != nil {
		errs = decodeAll(s.file, s.path, n, v)
	}
	if err := s.applyEnv(v); err != nil {
		errs = append(errs, err)
	}
	return decodeError(errors.Join(errs...))
}

// decodeError marks the ConfigErrors in err as coming from Decode.
func decodeError(err error) error {
	var ce *ConfigError
	if errors.As(err, &ce) {
		ce.decode = true
	}
	return err
}

// isDecodeError reports whether err says a section did not decode, as
// opposed to a plugin's own validation of decoded values.
func isDecodeError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce) && ce.decode
}

// applyEnv applies the VITALS_ overrides of v's env-tagged fields.
func (s Section) applyEnv(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return nil
	}
	vars := map[string]string{} // variable -> key
	t := rv.Elem().Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name = strings.TrimSpace(name); name != "" && key != "" && key != "-" {
			vars[EnvPrefix+name] = key
		}
	}
	if len(vars) == 0 || s.env == nil {
		return nil
	}
	var look envconfig.Lookuper = envconfig.OsLookuper()
	if s.env.lookup != nil {
		look = s.env.lookup
	}
	if errs := processEnv(context.Background(), v, look, func(env string) string { return joinKey(s.path, vars[env]) }); len(errs) > 0 {
		return errors.Join(errs...)
	}
	s.env.mu.Lock()
	defer s.env.mu.Unlock()
	for env, key := range vars {
		if _, ok := look.Lookup(env); ok {
			s.env.set[key] = env
		}
	}
	return nil
}

// Errorf returns an error about one key of the section, naming its line
// (or the environment variable that set it). The key is a dotted path
// below the section ("retention.max_age").
func (s Section) Errorf(key, format string, args ...any) error {
	e := &ConfigError{File: s.file, Key: joinKey(s.path, key), Msg: fmt.Sprintf(format, args...)}
	if s.env != nil {
		s.env.mu.Lock()
		env, ok := s.env.set[key]
		s.env.mu.Unlock()
		if ok {
			e.File, e.Key = "environment", env+" ("+e.Key+")"
			return e
		}
	}
	if n := lookup(s.tree(), key); n != nil {
		e.Line, e.Column = n.GetToken().Position.Line, n.GetToken().Position.Column
	}
	return e
}

// Equal reports whether two sections hold the same keys and values.
func (s Section) Equal(o Section) bool {
	var a, b any
	if n := s.tree(); n != nil {
		_ = yaml.NodeToValue(n, &a)
	}
	if n := o.tree(); n != nil {
		_ = yaml.NodeToValue(n, &b)
	}
	return reflect.DeepEqual(a, b)
}
