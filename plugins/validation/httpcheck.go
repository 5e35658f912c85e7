package validation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode"

	"github.com/vitals-dev/vitals/agent"
	"github.com/vitals-dev/vitals/catalog"
)

// problem is a rejected request: status, reason label and message.
type problem struct {
	code   int
	reason string
	msg    string
}

var (
	segmentRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_.:~-]{1,128}$`) })
)

// checkPath validates the path's segments under /api/, and the plugin and
// AI plugin ids of the admin API.
func checkPath(path string) *problem {
	if !strings.HasPrefix(path, "/api/") {
		return nil
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, s := range segs {
		if s == "" && i == len(segs)-1 {
			continue // trailing slash
		}
		if s == "" || s == "." || s == ".." || !segmentRE().MatchString(s) {
			return &problem{http.StatusBadRequest, "path", fmt.Sprintf("path segment %d %q is invalid: want 1..128 of letters, digits, _ . : ~ -", i+1, s)}
		}
	}
	if rest, ok := strings.CutPrefix(path, "/api/v1/admin/plugins/"); ok {
		name, _, _ := strings.Cut(rest, "/")
		if !agent.ValidName(name) {
			return &problem{http.StatusBadRequest, "path", fmt.Sprintf("plugin name %q is invalid: want lowercase letters, digits and _ (^[a-z][a-z0-9_]{0,62}$)", name)}
		}
	}
	if rest, ok := strings.CutPrefix(path, "/api/v1/admin/ai-plugins/"); ok {
		id, _, _ := strings.Cut(rest, "/")
		if err := catalog.ValidID(id); err != nil {
			return &problem{http.StatusBadRequest, "path", "AI plugin " + err.Error()}
		}
	}
	return nil
}

func checkQuery(raw string, max int) *problem {
	if len(raw) > max {
		return &problem{http.StatusBadRequest, "query", fmt.Sprintf("query string is %d bytes; at most %d allowed", len(raw), max)}
	}
	for _, r := range raw {
		if unicode.IsControl(r) {
			return &problem{http.StatusBadRequest, "query", "query string contains control characters"}
		}
	}
	return nil
}

// checkJSON verifies that body is one JSON object no deeper than max.
func checkJSON(body []byte, max int) *problem {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	depth := 0
	first := true
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return &problem{http.StatusBadRequest, "json", fmt.Sprintf("body is not valid JSON at byte %d: %v", se.Offset, err)}
			}
			return &problem{http.StatusBadRequest, "json", fmt.Sprintf("body is not valid JSON: %v", err)}
		}
		if first {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return &problem{http.StatusBadRequest, "json", "body must be a JSON object ({...})"}
			}
			first = false
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				depth++
				if depth > max {
					return &problem{http.StatusBadRequest, "json", fmt.Sprintf("body nests deeper than %d levels", max)}
				}
			default:
				depth--
				if depth == 0 && dec.More() {
					return &problem{http.StatusBadRequest, "json", "body has data after the JSON object"}
				}
			}
		}
	}
	if first {
		return &problem{http.StatusBadRequest, "json", "body is empty; send a JSON object or no body"}
	}
	if depth != 0 {
		return &problem{http.StatusBadRequest, "json", "body is not valid JSON: unexpected end"}
	}
	return nil
}

// checkRequest validates r and, for a request with a body, reads the body
// (at most max+1 bytes) and returns it for replay.
func checkRequest(cfg HTTPConfig, r *http.Request) ([]byte, *problem) {
	if !slices.Contains(cfg.Methods, r.Method) {
		return nil, &problem{http.StatusMethodNotAllowed, "method", fmt.Sprintf("method %s is not allowed; use one of %s", r.Method, strings.Join(cfg.Methods, ", "))}
	}
	if p := checkPath(r.URL.Path); p != nil {
		return nil, p
	}
	if p := checkQuery(r.URL.RawQuery, cfg.MaxQueryBytes); p != nil {
		return nil, p
	}
	hasBody := r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
	if !hasBody {
		return nil, nil
	}
	if r.ContentLength > cfg.MaxBodyBytes {
		return nil, &problem{http.StatusRequestEntityTooLarge, "size", fmt.Sprintf("body is %d bytes; at most %d allowed", r.ContentLength, cfg.MaxBodyBytes)}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, &problem{http.StatusBadRequest, "body", fmt.Sprintf("reading the body: %v", err)}
	}
	if int64(len(body)) > cfg.MaxBodyBytes {
		return nil, &problem{http.StatusRequestEntityTooLarge, "size", fmt.Sprintf("body is larger than %d bytes", cfg.MaxBodyBytes)}
	}
	if len(body) == 0 {
		return body, nil
	}
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || !slices.Contains(cfg.ContentTypes, mt) {
		return nil, &problem{http.StatusUnsupportedMediaType, "content_type", fmt.Sprintf("content type %q is not accepted; send %s", ct, strings.Join(cfg.ContentTypes, " or "))}
	}
	if mt == "application/json" || strings.HasSuffix(mt, "+json") {
		if p := checkJSON(body, cfg.MaxJSONDepth); p != nil {
			return nil, p
		}
	}
	return body, nil
}
