package alertmanager

import (
	"time"
)

// Condition returns the series an alert's condition holds for now.
type Condition func(w *Window) []Sample

// A Rule is an alert of alerts/vitals.rules.yml and its expression,
// written in Go against the agent's own metrics.
type Rule struct {
	Alert string
	// Reads names the metrics Cond reads: only those are kept, and only
	// their counters get a history.
	Reads []string
	Cond  Condition
}

// longestWindow is the longest range a Rule's condition reads.
const longestWindow = 5 * time.Minute

// Rules are the alerts the agent pushes: those of vitals.rules.yml that
// the agent can see in its own metrics. The agent cannot page on itself
// being down or unscraped (VitalsAgentDown, VitalsAgentScrapeMissing); an
// agent that dies stops resending, and its alerts resolve at their endsAt.
var Rules = []Rule{
	{Alert: "VitalsAIPluginUnhealthy", Reads: []string{"vitals_ai_plugin_health_state"}, Cond: aiPluginUnhealthy},
	{Alert: "VitalsAIPluginStuck", Reads: []string{"vitals_ai_probe_total", "vitals_ai_plugin_up", "vitals_ai_plugin_health_state", "vitals_ai_probe_errors_total"}, Cond: aiPluginStuck},
	{Alert: "VitalsAIPluginLost", Reads: []string{"vitals_ai_probe_errors_total"}, Cond: aiPluginLost},
	{Alert: "VitalsPluginFailed", Reads: []string{"vitals_plugin_state"}, Cond: pluginFailed},
	{Alert: "VitalsConfigReloadFailed", Reads: []string{"vitals_config_last_reload_successful"}, Cond: configReloadFailed},
}

func equal(samples []Sample, v float64) []Sample {
	var out []Sample
	for _, s := range samples {
		if s.Value == v {
			out = append(out, s)
		}
	}
	return out
}

// vitals_ai_plugin_health_state{state="unhealthy"} == 1
func aiPluginUnhealthy(w *Window) []Sample {
	return equal(w.Gauge("vitals_ai_plugin_health_state", map[string]string{"state": "unhealthy"}), 1)
}

// (
//
//	(sum by (plugin) (increase(vitals_ai_probe_total{probe="synthetic", result="failure"}[1m])) > 0
//	  unless on (plugin) sum by (plugin) (increase(vitals_ai_probe_total{probe="synthetic", result=~"success|passive"}[1m])) > 0)
//	and on (plugin) vitals_ai_plugin_up == 1
//
// ) or (
//
//	max by (plugin) (vitals_ai_plugin_health_state{state="unhealthy"}) == 1
//	and on (plugin) sum by (plugin) (increase(vitals_ai_probe_errors_total{class="stuck"}[5m])) > 0
//
// ) or max by (plugin) (vitals_ai_plugin_health_state{state="stuck"}) == 1
func aiPluginStuck(w *Window) []Sample {
	failed := w.Increase("vitals_ai_probe_total", map[string]string{"probe": "synthetic", "result": "failure"}, time.Minute, "plugin")
	succeeded := w.Increase("vitals_ai_probe_total", map[string]string{"probe": "synthetic", "result": "success"}, time.Minute, "plugin")
	// A passive check (the server's counters showed work completing) is
	// as good as a success.
	for plugin, v := range w.Increase("vitals_ai_probe_total", map[string]string{"probe": "synthetic", "result": "passive"}, time.Minute, "plugin") {
		succeeded[plugin] += v
	}
	up := map[string]bool{}
	for _, s := range w.Gauge("vitals_ai_plugin_up", nil) {
		up[s.Labels["plugin"]] = s.Value == 1
	}
	var out []Sample
	done := map[string]bool{}
	for plugin, v := range failed {
		if v > 0 && succeeded[plugin] <= 0 && up[plugin] {
			out = append(out, Sample{Labels: map[string]string{"plugin": plugin}, Value: v})
			done[plugin] = true
		}
	}
	stuck := w.Increase("vitals_ai_probe_errors_total", map[string]string{"class": "stuck"}, 5*time.Minute, "plugin")
	for _, s := range aiPluginUnhealthy(w) {
		plugin := s.Labels["plugin"]
		if !done[plugin] && stuck[plugin] > 0 {
			out = append(out, Sample{Labels: map[string]string{"plugin": plugin}, Value: 1})
			done[plugin] = true
		}
	}
	for _, s := range equal(w.Gauge("vitals_ai_plugin_health_state", map[string]string{"state": "stuck"}), 1) {
		if plugin := s.Labels["plugin"]; !done[plugin] {
			out = append(out, Sample{Labels: map[string]string{"plugin": plugin}, Value: 1})
			done[plugin] = true
		}
	}
	return out
}

// sum by (plugin) (increase(vitals_ai_probe_errors_total{class="stale"}[2m])) > 0
func aiPluginLost(w *Window) []Sample {
	var out []Sample
	for plugin, v := range w.Increase("vitals_ai_probe_errors_total", map[string]string{"class": "stale"}, 2*time.Minute, "plugin") {
		if v > 0 {
			out = append(out, Sample{Labels: map[string]string{"plugin": plugin}, Value: v})
		}
	}
	return out
}

// vitals_plugin_state{state="failed"} == 1
func pluginFailed(w *Window) []Sample {
	return equal(w.Gauge("vitals_plugin_state", map[string]string{"state": "failed"}), 1)
}

// vitals_config_last_reload_successful == 0
func configReloadFailed(w *Window) []Sample {
	return equal(w.Gauge("vitals_config_last_reload_successful", nil), 0)
}
