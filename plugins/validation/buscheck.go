package validation

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/vitals-dev/vitals/bus"
	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

// ErrInvalid wraps every bus message rejection.
var ErrInvalid = errors.New("invalid bus message")

var (
	idRE     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`) })
	sourceRE = idRE
)

// payloadFor returns an empty message of the type a well-known topic
// carries, or nil for topics without one.
func payloadFor(topic string) proto.Message {
	switch {
	case topic == "plugin.announce":
		return &busv1.Announce{}
	case topic == "plugin.heartbeat":
		return &busv1.Heartbeat{}
	case topic == "plugin.goodbye":
		return &busv1.Goodbye{}
	case strings.HasPrefix(topic, "health.status."):
		return &busv1.HealthStatus{}
	case strings.HasPrefix(topic, "health.request."):
		return &busv1.HealthRequest{}
	case topic == "health.response":
		return &busv1.HealthResponse{}
	case strings.HasPrefix(topic, "alerts."):
		return &busv1.Alert{}
	case strings.HasPrefix(topic, "lifecycle."):
		return &busv1.LifecycleEvent{}
	}
	return nil
}

type busReject struct {
	reason string
	msg    string
}

// checkMessage validates one delivered message.
func checkMessage(cfg BusConfig, m bus.Message, now time.Time) *busReject {
	if err := bus.ValidTopic(m.Topic); err != nil {
		return &busReject{"topic", fmt.Sprintf("topic %q: %v", m.Topic, err)}
	}
	if !idRE().MatchString(m.ID) {
		return &busReject{"envelope", fmt.Sprintf("envelope id %q: want 1..128 of letters, digits, _ . : -", m.ID)}
	}
	if !sourceRE().MatchString(m.Source) {
		return &busReject{"envelope", fmt.Sprintf("envelope source %q: want 1..128 of letters, digits, _ . : -", m.Source)}
	}
	if m.Time.IsZero() {
		return &busReject{"envelope", "envelope time is missing"}
	}
	if m.Time.After(now.Add(cfg.MaxClockSkew.D())) {
		return &busReject{"envelope", fmt.Sprintf("envelope time %s is more than %s in the future", m.Time.UTC().Format(time.RFC3339), cfg.MaxClockSkew)}
	}
	if m.CorrelationID != "" && !idRE().MatchString(m.CorrelationID) {
		return &busReject{"envelope", fmt.Sprintf("correlation id %q is malformed", m.CorrelationID)}
	}
	if m.ReplyTo != "" && (bus.ValidTopic(m.ReplyTo) != nil || !strings.HasPrefix(m.ReplyTo, bus.ReplyPrefix)) {
		return &busReject{"envelope", fmt.Sprintf("reply-to %q must be a topic under %s", m.ReplyTo, bus.ReplyPrefix)}
	}
	if len(m.Payload) > cfg.MaxPayloadBytes {
		return &busReject{"size", fmt.Sprintf("payload is %d bytes; at most %d allowed", len(m.Payload), cfg.MaxPayloadBytes)}
	}
	if !cfg.StrictPayloads {
		return nil
	}
	if want := payloadFor(m.Topic); want != nil {
		ct := bus.ProtoContentType(want)
		if m.ContentType != ct {
			return &busReject{"payload", fmt.Sprintf("topic %s carries %s, got content type %q", m.Topic, ct, m.ContentType)}
		}
		if err := proto.Unmarshal(m.Payload, want); err != nil {
			return &busReject{"payload", fmt.Sprintf("payload of %s does not decode: %v", m.Topic, err)}
		}
		return nil
	}
	if strings.HasPrefix(m.Topic, "logs.") {
		switch {
		case m.ContentType == bus.ProtoContentType(&busv1.LogRecord{}):
			if err := proto.Unmarshal(m.Payload, &busv1.LogRecord{}); err != nil {
				return &busReject{"payload", fmt.Sprintf("log record does not decode: %v", err)}
			}
		case strings.Contains(m.ContentType, "json"):
			var obj map[string]any
			if err := json.Unmarshal(m.Payload, &obj); err != nil {
				return &busReject{"payload", fmt.Sprintf("JSON log record is not a JSON object: %v", err)}
			}
		default:
			if !utf8.Valid(m.Payload) {
				return &busReject{"payload", "text log record is not valid UTF-8"}
			}
		}
	}
	return nil
}
