package agent

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/sethvargo/go-envconfig"
)

// processEnv applies the VITALS_ variables of target's env-tagged fields
// (a pointer to a struct) one variable at a time, so that every bad value
// is reported, each naming its variable and the key it sets (keyOf).
func processEnv(ctx context.Context, target any, lookup envconfig.Lookuper, keyOf func(env string) string) []error {
	var errs []error
	for _, name := range envNames(reflect.TypeOf(target).Elem()) {
		env := EnvPrefix + name
		val, ok := lookup.Lookup(env)
		if !ok {
			continue
		}
		one := envconfig.MapLookuper(map[string]string{name: val})
		if err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: target, Lookuper: one, DefaultNoInit: true}); err != nil {
			key := env
			if k := keyOf(env); k != "" {
				key += " (" + k + ")"
			}
			errs = append(errs, &ConfigError{File: "environment", Key: key, Msg: plainEnvMessage(err, val)})
		}
	}
	return errs
}

// envNames lists the variables (without prefix) of t's env-tagged fields,
// in nested structs too, as go-envconfig finds them.
func envNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name = strings.TrimSpace(name); name != "" {
			out = append(out, name)
		} else if f.Type.Kind() == reflect.Struct && f.IsExported() {
			out = append(out, envNames(f.Type)...)
		}
	}
	return out
}

// plainEnvMessage says what is wrong with an environment value without Go
// function or type names.
func plainEnvMessage(err error, val string) string {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		want := "a number"
		switch ne.Func {
		case "ParseBool":
			want = "true or false"
		case "ParseInt":
			want = "an integer"
		case "ParseUint":
			want = "a non-negative integer"
		}
		if errors.Is(ne.Err, strconv.ErrRange) {
			return fmt.Sprintf("%q is out of range for %s", val, want)
		}
		return fmt.Sprintf("want %s, got %q", want, val)
	}
	return envMessage(err)
}

// envMessage turns go-envconfig's "Field: reason" into the reason alone;
// the caller names the variable.
func envMessage(err error) string {
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, ": "); ok {
		return rest
	}
	return msg
}
