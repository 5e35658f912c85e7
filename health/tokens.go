package health

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vitals-dev/vitals/probes"
)

// What a synthetic inference costs, and when it is worth it.
//
// A synthetic inference proves a server generates, at the price of a few
// tokens of its time. A server whose own counters say it completed
// requests since the last check has proved it already: an idle-aware
// check (idle_aware, on by default) then sends none and counts a passive
// success, with the counters' movement as its reason. On a quiet server
// the synthetic inference runs as before.
//
// The tokens the agent spends are counted (vitals_ai_probe_tokens_total,
// from the usage the server returns) against an optional daily budget per
// plugin (daily_token_budget); once it is spent the synthetic inference is
// skipped, with that reason, until the next UTC day: the check then rests
// on liveness and readiness and the probe reports nothing healthy.

// tokenUse is one plugin's synthetic spending and the server counters its
// checks saw. The plugin's check owns it (under plugin.mu).
type tokenUse struct {
	// day is the UTC day spent counts in; spent is what the synthetic
	// inferences of that day cost (prompt and completion tokens).
	day   time.Time
	spent int64

	// prev is the server's counters at the previous check that read them,
	// nil when that check read none; ownTokens and ownSuccess are what the
	// previous check's synthetic inference, sent after that read, added to
	// them.
	prev                  *counters
	ownTokens, ownSuccess float64
}

// counters are the progress counters of a server's signals.
type counters struct {
	at                     time.Time
	tokens                 float64
	success, failure       float64
	hasTokens, hasRequests bool
}

func countersOf(sig *probes.Signals, at time.Time) *counters {
	if sig == nil {
		return nil
	}
	c := &counters{at: at, hasTokens: sig.Has(probes.FieldGeneratedTokens), hasRequests: sig.Has(probes.FieldRequests)}
	c.tokens = sig.GeneratedTokens
	c.success, c.failure = sig.Requests[probes.RequestSuccess], sig.Requests[probes.RequestFailure]
	if !c.hasTokens && !c.hasRequests {
		return nil
	}
	return c
}

// passive says whether sig, read in this check, shows the server completed
// requests since the previous check beyond the agent's own synthetic
// inference: its generated-tokens or its success counter moved, and its
// failure counter did not. The reason names the movement. A counter that
// went down is a restarted server, which proves nothing.
func (u *tokenUse) passive(sig *probes.Signals) (string, bool) {
	cur := countersOf(sig, time.Time{})
	p := u.prev
	if cur == nil || p == nil {
		return "", false
	}
	var moved []string
	if cur.hasTokens && p.hasTokens {
		if cur.tokens < p.tokens {
			return "", false
		}
		if d := cur.tokens - p.tokens - u.ownTokens; d > 0 {
			moved = append(moved, fmt.Sprintf("%g tokens generated", d))
		}
	}
	if cur.hasRequests && p.hasRequests {
		if cur.success < p.success || cur.failure < p.failure {
			return "", false
		}
		if cur.failure > p.failure {
			return "", false // failures rising: let the probe say what fails
		}
		if d := cur.success - p.success - u.ownSuccess; d > 0 {
			moved = append(moved, fmt.Sprintf("%g requests succeeded", d))
		}
	}
	if len(moved) == 0 {
		return "", false
	}
	return "the server's own counters show work completing since the last check (" + strings.Join(moved, ", ") +
		"): no synthetic inference needed", true
}

// sample keeps sig, read at at, for the next check, with what the
// synthetic inference r (nil when none ran after the read) added to the
// server's counters, and returns the server's generated tokens per second
// since the previous sample: its own counter's delta over the wall time
// between the two reads. ok is false when there is no such rate: no
// counter in either read, a counter that went down (a restart), no time
// between them.
func (u *tokenUse) sample(sig *probes.Signals, at time.Time, r *probes.Result) (tps float64, ok bool) {
	cur := countersOf(sig, at)
	prev := u.prev
	u.prev, u.ownTokens, u.ownSuccess = cur, 0, 0
	if r != nil {
		u.ownTokens, u.ownSuccess = float64(r.CompletionTokens), 1
	}
	if cur == nil || prev == nil || !cur.hasTokens || !prev.hasTokens || cur.tokens < prev.tokens {
		return 0, false
	}
	dt := cur.at.Sub(prev.at).Seconds()
	if dt <= 0 {
		return 0, false
	}
	return (cur.tokens - prev.tokens) / dt, true
}

// spentToday is what the synthetic inferences spent on now's UTC day.
func (u *tokenUse) spentToday(now time.Time) int64 {
	if d := utcDay(now); !d.Equal(u.day) {
		u.day, u.spent = d, 0
	}
	return u.spent
}

// spend adds n tokens to now's UTC day.
func (u *tokenUse) spend(n int64, now time.Time) {
	u.spentToday(now)
	u.spent += n
}

func utcDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// syntheticCheck is the synthetic inference of one check, when it adds
// information and the budget allows: passive when idle-aware and sig (the
// engine's signals, read in this check before it; nil when none were)
// shows requests completing; skipped once the plugin's daily token budget
// is spent; else run, its tokens counted. A server that refuses the
// budget is a config error naming the key to raise.
// Its outcome is written to o.
func (e *Engine) syntheticCheck(ctx context.Context, cfg *Config, p *plugin, o *ProbeOutcome, syn probes.Probe, op string,
	pt probes.Target, pc probes.Config, sig *probes.Signals) {
	if cfg.IdleAware {
		if why, ok := p.tokens.passive(sig); ok {
			*o = ProbeOutcome{Probe: probes.Synthetic, OK: true, Passive: true, Reason: why}
			return
		}
	}
	budget, budgetKey := cfg.dailyTokenBudget(pt.ID)
	if budget > 0 {
		if spent := p.tokens.spentToday(e.o.Clock.Now()); spent >= budget {
			*o = ProbeOutcome{Probe: probes.Synthetic, Skipped: true, Informational: true,
				Reason: fmt.Sprintf("daily token budget spent (%d of %d tokens today, %s): no synthetic inference until 00:00 UTC; "+
					"this check rests on liveness and readiness", spent, budget, budgetKey)}
			return
		}
	}
	e.synthetic(ctx, cfg, o, p.httpClient(), syn, op, pt, pc)
	r := &o.Result
	p.tokens.spend(r.PromptTokens+r.CompletionTokens, e.o.Clock.Now())
	e.metrics.tokens.spent(pt.ID, r.PromptTokens, r.CompletionTokens)
	if o.Class == probes.ClassConfig {
		n, key := cfg.maxTokens(pt.ID)
		o.Error = fmt.Sprintf("%s; raise %s (now %d, at most %d)", o.Error, key, n, probes.MaxSyntheticTokens)
	}
}

// tokenMetrics count the tokens the agent's own synthetic inferences
// spend.
type tokenMetrics struct {
	total *prometheus.CounterVec
}

func newTokenMetrics() *tokenMetrics {
	return &tokenMetrics{total: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vitals_ai_probe_tokens_total",
		Help: "Tokens the agent's own synthetic inferences spent, as the server reported them, by type (prompt, completion).",
	}, []string{"plugin", "type"})}
}

// spent counts one synthetic inference's usage. Both types exist from the
// first inference on, so increase() sees the first tokens of either.
func (m *tokenMetrics) spent(plugin string, prompt, completion int64) {
	m.total.WithLabelValues(plugin, "prompt").Add(float64(max(prompt, 0)))
	m.total.WithLabelValues(plugin, "completion").Add(float64(max(completion, 0)))
}

func (m *tokenMetrics) forget(plugin string) {
	m.total.DeletePartialMatch(prometheus.Labels{"plugin": plugin})
}

// result is the result label of a probe outcome: success, failure, or
// passive and skipped for a synthetic inference not sent.
func (o ProbeOutcome) result() string {
	switch {
	case o.Passive:
		return "passive"
	case o.Skipped:
		return "skipped"
	case o.OK:
		return "success"
	}
	return "failure"
}

// sent reports whether the outcome is of a request the engine sent.
func (o ProbeOutcome) sent() bool { return !o.Passive && !o.Skipped }

// tokensPerSecond is the check's output tokens per second: the server's,
// from its generated-tokens counter between this check's read and the
// previous one's, where it has one; else the synthetic answer's, when it
// had at least probes.MinRateTokens tokens (a rate from fewer is noise).
// It keeps this check's counters (obs.Signals, read after the check
// started at start, before its synthetic inference) for the next.
func (e *Engine) tokensPerSecond(p *plugin, obs Observation, start time.Time) (float64, bool) {
	var syn *probes.Result
	for i, pr := range obs.Probes {
		if pr.Probe == probes.Synthetic && pr.OK && pr.sent() {
			syn = &obs.Probes[i].Result
		}
	}
	// Each check reads the signals at the same point, after liveness and
	// readiness: the checks' starts are as far apart as the reads.
	if tps, ok := p.tokens.sample(obs.Signals, start, syn); ok {
		return tps, true
	}
	if syn != nil {
		if tps := syn.OutputTokensPerSecond(); tps > 0 {
			return tps, true
		}
	}
	return 0, false
}
