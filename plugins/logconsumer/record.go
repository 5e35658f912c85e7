package logconsumer

import (
	"encoding/json"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/vitals-dev/vitals/bus"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// Entry is one stored log record, as GET /api/v1/admin/logs shows it.
type Entry struct {
	ID         int64             `json:"id"`
	Time       time.Time         `json:"time"`
	Level      string            `json:"level"`
	Source     string            `json:"source"`
	Topic      string            `json:"topic"`
	Message    string            `json:"message"`
	Attributes map[string]string `json:"attributes,omitempty"`
	TraceID    string            `json:"trace_id,omitempty"`
	SpanID     string            `json:"span_id,omitempty"`
	Encrypted  bool              `json:"encrypted,omitempty"`
}

// body is the part of an entry that is sealed at rest.
type body struct {
	Message    string            `json:"message"`
	Attributes map[string]string `json:"attributes,omitempty"`
	TraceID    string            `json:"trace_id,omitempty"`
	SpanID     string            `json:"span_id,omitempty"`
}

// Levels, by rank.
var levelRank = map[string]int{"trace": -8, "debug": -4, "info": 0, "notice": 2, "warn": 4, "error": 8, "fatal": 12}

// normLevel maps level spellings to the stored names.
func normLevel(l string) string {
	l = strings.ToLower(strings.TrimSpace(l))
	switch l {
	case "warning":
		return "warn"
	case "err":
		return "error"
	case "critical", "crit", "panic":
		return "fatal"
	}
	if _, ok := levelRank[l]; ok {
		return l
	}
	return "info"
}

var sourceRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`) })

var logRecordType = bus.ProtoContentType(&busv1.LogRecord{})

// maxMessage bounds a stored message text.
const maxMessage = 64 << 10

// parse turns a bus message into an entry. Level and source come from the
// payload, then from the topic (logs.<level>.<source>), then from the
// envelope.
func parse(m bus.Message, now time.Time) (Entry, error) {
	e := Entry{Topic: m.Topic, Time: m.Time}
	switch {
	case m.ContentType == logRecordType:
		var r busv1.LogRecord
		if err := m.Decode(&r); err != nil {
			return e, err
		}
		if r.Time != nil {
			e.Time = r.Time.AsTime()
		}
		e.Level, e.Source, e.Message, e.Attributes, e.TraceID, e.SpanID = r.Level, r.Source, r.Message, r.Attributes, r.TraceId, r.SpanId
	case strings.Contains(m.ContentType, "json"):
		var r struct {
			Time       time.Time         `json:"time"`
			Level      string            `json:"level"`
			Source     string            `json:"source"`
			Message    string            `json:"message"`
			Msg        string            `json:"msg"`
			Attributes map[string]string `json:"attributes"`
			TraceID    string            `json:"trace_id"`
			SpanID     string            `json:"span_id"`
		}
		if err := json.Unmarshal(m.Payload, &r); err != nil {
			return e, err
		}
		if !r.Time.IsZero() {
			e.Time = r.Time
		}
		if r.Message == "" {
			r.Message = r.Msg
		}
		e.Level, e.Source, e.Message, e.Attributes, e.TraceID, e.SpanID = r.Level, r.Source, r.Message, r.Attributes, r.TraceID, r.SpanID
	default:
		e.Message = string(m.Payload)
	}
	parts := strings.SplitN(m.Topic, ".", 3)
	if e.Level == "" && len(parts) > 1 {
		e.Level = parts[1]
	}
	if e.Source == "" && len(parts) > 2 {
		e.Source = parts[2]
	}
	if e.Source == "" {
		e.Source = m.Source
	}
	if !sourceRE().MatchString(e.Source) {
		e.Source = "unknown"
	}
	e.Level = normLevel(e.Level)
	if e.Time.IsZero() {
		e.Time = now
	}
	if len(e.Message) > maxMessage {
		e.Message = e.Message[:maxMessage]
	}
	return e, nil
}
