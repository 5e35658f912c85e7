package agent

import (
	"fmt"

	"github.com/sethvargo/go-envconfig"
)

// Secrets reads the secrets a config names, kept in files or environment
// variables. The environment is the one the config was loaded with
// (LoadFile's or Parse's lookup); the process's for a section made
// otherwise, and for the zero Secrets.
type Secrets struct{ lookup envconfig.Lookuper }

// Secrets returns the reader of the secrets the section names.
func (s Section) Secrets() Secrets {
	if s.env != nil && s.env.lookup != nil {
		return Secrets{lookup: s.env.lookup}
	}
	return Secrets{}
}

// Read returns a secret: the content of file when file is set (a regular
// file of at most limit bytes, see ReadFile), else the value of the
// environment variable env. An empty file and an unset or empty variable
// are errors naming the file or the variable. The bytes are returned as
// they are (a raw key may be all white space); trimming them, and refusing
// a secret that is only white space, is the caller's.
func (r Secrets) Read(file, env string, limit int64) ([]byte, error) {
	if file != "" {
		b, err := ReadFile(file, limit)
		if err != nil {
			return nil, err
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("file %s is empty", file)
		}
		return b, nil
	}
	var look envconfig.Lookuper = envconfig.OsLookuper()
	if r.lookup != nil {
		look = r.lookup
	}
	v, ok := look.Lookup(env)
	if !ok || v == "" {
		return nil, fmt.Errorf("environment variable %s is not set", env)
	}
	return []byte(v), nil
}
