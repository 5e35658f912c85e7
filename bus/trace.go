package bus

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	busv1 "github.com/vitals-dev/vitals/proto/vitals/bus/v1"
)

var (
	attrSystem  = semconv.MessagingSystemKey.String("zeromq")
	attrDropped = attribute.Bool("vitals.bus.dropped", true)
)

// destination returns the destination part of a span name: the topic, or
// for a reply topic (reply.<source>.<kind>.<id>, one per request) its
// template, reply.<source>.<kind>.{id}, with the attributes that say so.
// Span names stay low-cardinality; the topic itself is in
// messaging.destination.name.
func destination(topic string, attrs []attribute.KeyValue) (string, []attribute.KeyValue) {
	rest, ok := strings.CutPrefix(topic, ReplyPrefix)
	if !ok {
		return topic, attrs
	}
	tmpl := ReplyPrefix + "{id}"
	if parts := strings.SplitN(rest, ".", 3); len(parts) == 3 {
		tmpl = ReplyPrefix + parts[0] + "." + parts[1] + ".{id}"
	}
	return tmpl, append(attrs, semconv.MessagingDestinationTemplate(tmpl), semconv.MessagingDestinationTemporary(true))
}

func (c *Client) producerSpan(ctx context.Context, topic string, msg *Message) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{
		attrSystem,
		semconv.MessagingDestinationName(topic),
		semconv.MessagingOperationName("publish"),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingMessageID(msg.ID),
		semconv.MessagingMessageBodySize(len(msg.Payload)),
	}
	if msg.CorrelationID != "" {
		attrs = append(attrs, semconv.MessagingMessageConversationID(msg.CorrelationID))
	}
	dest, attrs := destination(topic, attrs)
	return c.tracer.Start(ctx, "publish "+dest,
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
}

// consumerSpan records a delivery as a CONSUMER span whose parent is the
// producer's span (from the envelope), also linked to it, and returns its
// context.
func (c *Client) consumerSpan(parent context.Context, s *subscription, msg *Message, size int) (trace.SpanContext, trace.Span) {
	attrs := []attribute.KeyValue{
		attrSystem,
		semconv.MessagingDestinationName(msg.Topic),
		semconv.MessagingDestinationSubscriptionName(s.prefix),
		semconv.MessagingOperationName("receive"),
		semconv.MessagingOperationTypeReceive,
		semconv.MessagingMessageID(msg.ID),
		semconv.MessagingMessageBodySize(len(msg.Payload)),
		semconv.MessagingMessageEnvelopeSize(size),
	}
	if msg.CorrelationID != "" {
		attrs = append(attrs, semconv.MessagingMessageConversationID(msg.CorrelationID))
	}
	dest, attrs := destination(msg.Topic, attrs)
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...)}
	if psc := trace.SpanContextFromContext(parent); psc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: psc}))
	}
	_, span := c.tracer.Start(parent, "receive "+dest, opts...)
	return span.SpanContext(), span
}

func recordErr(span trace.Span, err error) {
	if span == nil {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// envCarrier carries W3C trace context in an Envelope.
type envCarrier struct{ e *busv1.Envelope }

func (c envCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.e.GetTraceparent()
	case "tracestate":
		return c.e.GetTracestate()
	}
	return ""
}

func (c envCarrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.e.Traceparent = value
	case "tracestate":
		c.e.Tracestate = value
	}
}

func (c envCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }
