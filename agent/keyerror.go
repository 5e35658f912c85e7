package agent

import (
	"errors"
	"fmt"
)

// KeyErrorf returns a *ConfigError about a key that is not yet placed in a
// file, for checks that run without a Section (a library's Validate, one
// target of a manifest). Section.Place puts it at its key in a section.
func KeyErrorf(key, format string, args ...any) error {
	return &ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Place returns err as an error of the section: an unplaced *ConfigError
// (from KeyErrorf) at prefix.key, with its line; any other error at prefix.
func (s Section) Place(prefix string, err error) error {
	var ce *ConfigError
	if errors.As(err, &ce) && ce.File == "" {
		return s.Errorf(joinKey(prefix, ce.Key), "%s", ce.Msg)
	}
	return s.Errorf(prefix, "%v", err)
}
