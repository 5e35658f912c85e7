package dashboards

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Build returns every dashboard, by the file it is committed as.
func Build() (map[string]dashboard.Dashboard, error) {
	out := map[string]dashboard.Dashboard{}
	for file, b := range map[string]*dashboard.DashboardBuilder{
		"ai-plugins-overview.json": overview(),
		"ai-plugin-detail.json":    detail(),
		"agent-internals.json":     internals(),
	} {
		d, err := b.Build()
		if err != nil {
			return nil, err
		}
		// Grafana wants unique panel ids; the builders leave them unset.
		id := uint32(0)
		for _, p := range d.Panels {
			id++
			switch {
			case p.Panel != nil:
				p.Panel.Id = ptr(id)
			case p.RowPanel != nil:
				p.RowPanel.Id = id
			}
		}
		out[file] = d
	}
	return out, nil
}

// ds is the data source of every panel and query: the dashboard's
// "datasource" variable.
var ds = common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr("${datasource}")}

func ptr[T any](v T) *T { return &v }

// sel is the selector every query filters on.
const sel = `job=~"$job", instance=~"$instance"`

// plugSel adds the detail dashboard's plugin.
const plugSel = sel + `, plugin=~"$plugin"`

func base(uid, title, desc string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(desc).
		Tags([]string{"vitals"}).
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Link(dashboard.NewDashboardLinkBuilder("Vitals").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{"vitals"}).
			AsDropdown(true).
			IncludeVars(true).
			KeepTime(true)).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Data source").
			Type("prometheus")).
		WithVariable(queryVar("job", "Job", `label_values(vitals_build_info, job)`, true)).
		WithVariable(queryVar("instance", "Agent", `label_values(vitals_build_info{job=~"$job"}, instance)`, true))
}

func queryVar(name, label, q string, multi bool) *dashboard.QueryVariableBuilder {
	v := dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(ds).
		Query(dashboard.StringOrMap{String: ptr(q)}).
		Definition(q).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
	if multi {
		v = v.Multi(true).IncludeAll(true).AllValue(".*").
			Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{String: ptr("All")}, Value: dashboard.StringOrArrayOfString{String: ptr("$__all")}})
	}
	return v
}

func q(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Expr(expr).LegendFormat(legend).Datasource(ds)
}

func instant(expr string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Expr(expr).Instant().Format(prometheus.PromQueryFormatTable).Datasource(ds)
}

func row(title string) *dashboard.RowBuilder { return dashboard.NewRowBuilder(title) }

func ts(title, desc, unit string, targets ...cog.Builder[variants.Dataquery]) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().Title(title).Description(desc).Unit(unit).
		Datasource(ds).Targets(targets).Height(8).Span(12).
		FillOpacity(10).ShowPoints(common.VisibilityModeNever).
		Legend(common.NewVizLegendOptionsBuilder().ShowLegend(true).DisplayMode(common.LegendDisplayModeList).Placement(common.LegendPlacementBottom))
}

func statPanel(title, desc, unit string, target cog.Builder[variants.Dataquery], steps []dashboard.Threshold) *stat.PanelBuilder {
	return stat.NewPanelBuilder().Title(title).Description(desc).Unit(unit).
		Datasource(ds).WithTarget(target).Height(4).Span(6).
		ColorMode(common.BigValueColorModeBackground).GraphMode(common.BigValueGraphModeNone).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false)).
		Thresholds(dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(steps))
}

func steps(colors ...any) []dashboard.Threshold {
	var out []dashboard.Threshold
	for i := 0; i < len(colors); i += 2 {
		var v *float64
		if f, ok := colors[i].(float64); ok {
			v = &f
		}
		out = append(out, dashboard.Threshold{Value: v, Color: colors[i+1].(string)})
	}
	return out
}

// healthStates are the health engine's states (health.States) in the
// order healthStateExpr numbers them, with the colour each shows in.
var healthStates = []struct{ name, color string }{
	{"unknown", "text"}, {"healthy", "green"}, {"degraded", "orange"}, {"overloaded", "dark-orange"},
	{"loading", "blue"}, {"cold", "light-blue"}, {"sleeping", "purple"}, {"stuck", "dark-red"}, {"unhealthy", "red"},
}

// healthMappings shows the numbers of healthStateExpr as words and colours.
func healthMappings() []dashboard.ValueMapping {
	opts := map[string]dashboard.ValueMappingResult{}
	for i, st := range healthStates {
		opts[strconv.Itoa(i)] = dashboard.ValueMappingResult{Text: ptr(st.name), Color: ptr(st.color), Index: ptr(int32(i))}
	}
	return []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: opts}}}
}

// healthStateExpr encodes each plugin's health state as a number: its
// index in healthStates (0 unknown, 1 healthy, ... 8 unhealthy).
func healthStateExpr(s string) string {
	var b strings.Builder
	b.WriteString("max by (plugin) (\n")
	for i, st := range healthStates {
		b.WriteString("  ")
		if i > 0 {
			b.WriteString("or ")
		}
		fmt.Fprintf(&b, "(vitals_ai_plugin_health_state{%s, state=%q} == 1) * %d\n", s, st.name, i)
	}
	b.WriteString(")")
	return b.String()
}

func stateTimeline(title, desc, expr, legend string) *statetimeline.PanelBuilder {
	return statetimeline.NewPanelBuilder().Title(title).Description(desc).
		Datasource(ds).WithTarget(q(expr, legend)).Height(8).Span(24).
		Mappings(healthMappings()).ShowValue(common.VisibilityModeNever).MergeValues(true).
		Thresholds(dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(steps(nil, "text")))
}

func quantiles(metric, s, by string) []cog.Builder[variants.Dataquery] {
	var out []cog.Builder[variants.Dataquery]
	for _, p := range []struct{ q, name string }{{"0.5", "p50"}, {"0.95", "p95"}, {"0.99", "p99"}} {
		expr := `histogram_quantile(` + p.q + `, sum by (` + by + `le) (rate(` + metric + `_bucket{` + s + `}[$__rate_interval])))`
		if tracedHistograms[metric] {
			// A native histogram where the scrape negotiated one, the
			// classic buckets (metrics.classic_buckets) where not.
			expr = `histogram_quantile(` + p.q + `, sum by (` + strings.TrimSuffix(by, ", ") + `) (rate(` + metric + `{` + s + `}[$__rate_interval]))) or ` + expr
		}
		qb := q(expr, legendOf(by, p.name))
		if tracedHistograms[metric] {
			qb.Exemplar(true)
		}
		out = append(out, qb)
	}
	return out
}

// tracedHistograms carry the check's trace_id as exemplars: their panels
// ask Prometheus for them, and the Prometheus data source links each to
// its trace in the Jaeger data source (provisioning/datasources).
var tracedHistograms = map[string]bool{
	"vitals_ai_probe_duration_seconds":      true,
	"vitals_ai_time_to_first_token_seconds": true,
}

func legendOf(by, suffix string) string {
	if by == "" {
		return suffix
	}
	return "{{" + by[:len(by)-2] + "}} " + suffix
}

func overview() *dashboard.DashboardBuilder {
	return base("vitals-ai-overview", "Vitals / AI plugins overview",
		"Health, latency, errors, resources and capabilities of every AI plugin the Vitals agents watch.").
		WithRow(row("Health now")).
		WithPanel(statPanel("Healthy", "AI plugins in state healthy.", "none",
			instant(`sum(vitals_ai_plugin_health_state{`+sel+`, state="healthy"}) or vector(0)`), steps(nil, "green"))).
		WithPanel(statPanel("Degraded", "AI plugins in state degraded.", "none",
			instant(`sum(vitals_ai_plugin_health_state{`+sel+`, state="degraded"}) or vector(0)`), steps(nil, "green", 1.0, "orange"))).
		WithPanel(statPanel("Unhealthy", "AI plugins in state unhealthy.", "none",
			instant(`sum(vitals_ai_plugin_health_state{`+sel+`, state="unhealthy"}) or vector(0)`), steps(nil, "green", 1.0, "red"))).
		WithPanel(statPanel("Up ratio", "Share of AI plugins whose last liveness probe passed.", "percentunit",
			instant(`avg(vitals_ai_plugin_up{`+sel+`})`), steps(nil, "red", 0.5, "orange", 1.0, "green"))).
		WithPanel(stateTimeline("Health state per plugin", "The health engine's state of each AI plugin over time.",
			healthStateExpr(sel), "{{plugin}}")).
		WithPanel(ts("Up", "1 when the plugin's last liveness probe passed.", "none",
			q(`vitals_ai_plugin_up{`+sel+`}`, "{{plugin}}")).Min(0).Max(1)).
		WithPanel(bargauge.NewPanelBuilder().Title("Capabilities available now").
			Description("For each capability, how many healthy AI plugins offer it: can this fleet serve embeddings right now?").
			Datasource(ds).Height(8).Span(12).Unit("none").
			WithTarget(instant(`sum by (capability) (vitals_ai_plugin_capability{` + sel + `} * on (job, instance, plugin) group_left () vitals_ai_plugin_health_state{` + sel + `, state="healthy"})`).LegendFormat("{{capability}}").Format(prometheus.PromQueryFormatTimeSeries)).
			DisplayMode(common.BarGaugeDisplayModeBasic).Orientation(common.VizOrientationHorizontal).
			Thresholds(dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(steps(nil, "red", 1.0, "green")))).
		WithPanel(table.NewPanelBuilder().Title("AI plugins").
			Description("Every AI plugin: kind, version and where it was discovered.").
			Datasource(ds).Height(8).Span(24).
			WithTarget(instant(`max by (instance, plugin, kind, version, source) (vitals_ai_plugin_info{` + sel + `})`))).
		WithRow(row("Latency")).
		WithPanel(ts("Probe latency", "p50, p95 and p99 of every probe of every plugin.", "s",
			quantiles("vitals_ai_probe_duration_seconds", sel, "")...)).
		WithPanel(ts("Probe latency p95 by plugin", "", "s",
			quantiles("vitals_ai_probe_duration_seconds", sel, "plugin, ")[1])).
		WithPanel(ts("Time to first token p95", "Of the synthetic inferences (plugins with synthetic checks on).", "s",
			quantiles("vitals_ai_time_to_first_token_seconds", sel, "plugin, ")[1])).
		WithPanel(ts("Output tokens per second", "Of the last synthetic inference of each plugin.", "none",
			q(`vitals_ai_output_tokens_per_second{`+sel+`}`, "{{plugin}}"))).
		WithRow(row("Errors")).
		WithPanel(ts("Probe errors by class", "Failed probe requests per second, by error class.", "reqps",
			q(`sum by (class) (rate(vitals_ai_probe_errors_total{`+sel+`}[$__rate_interval]))`, "{{class}}"))).
		WithPanel(ts("Probe failure ratio by plugin", "Failed share of each plugin's probes (resources probes left out).", "percentunit",
			q(`sum by (plugin) (rate(vitals_ai_probe_total{`+sel+`, probe!="resources", result="failure"}[$__rate_interval])) / sum by (plugin) (rate(vitals_ai_probe_total{`+sel+`, probe!="resources"}[$__rate_interval]))`, "{{plugin}}")).Min(0)).
		WithPanel(ts("Health transitions", "State changes per plugin and new state.", "none",
			q(`sum by (plugin, to) (increase(vitals_ai_health_transitions_total{`+sel+`}[$__rate_interval]))`, "{{plugin}} → {{to}}")).
			DrawStyle(common.GraphDrawStyleBars)).
		WithRow(row("Saturation")).
		WithPanel(ts("Requests running", "Requests each AI server processes now, as it reports them.", "none",
			q(`vitals_ai_requests_running{`+sel+`}`, "{{plugin}}")).Min(0)).
		WithPanel(ts("Requests waiting", "Requests queued in each AI server, not yet running.", "none",
			q(`vitals_ai_requests_waiting{`+sel+`}`, "{{plugin}}")).Min(0)).
		WithPanel(ts("KV cache usage", "Share of each AI server's KV cache in use.", "percentunit",
			q(`vitals_ai_kv_cache_usage_ratio{`+sel+`}`, "{{plugin}}")).Min(0).Max(1)).
		WithPanel(ts("Server tokens per second", "Tokens each AI server generates, all clients, from its own counter.", "none",
			q(`rate(vitals_ai_server_generated_tokens_total{`+sel+`}[$__rate_interval])`, "{{plugin}}")).Min(0)).
		WithRow(row("Resources")).
		WithPanel(ts("CPU", "CPU cores used by each AI plugin's local process.", "none",
			q(`rate(vitals_ai_process_cpu_seconds_total{`+sel+`}[$__rate_interval])`, "{{plugin}}"))).
		WithPanel(ts("Resident memory", "Of each AI plugin's local process.", "bytes",
			q(`vitals_ai_process_resident_memory_bytes{`+sel+`}`, "{{plugin}}"))).
		WithPanel(ts("Model memory", "Memory of each loaded model as the server reports it.", "bytes",
			q(`sum by (plugin, memory) (vitals_ai_model_memory_bytes{`+sel+`})`, "{{plugin}} {{memory}}")))
}

func detail() *dashboard.DashboardBuilder {
	return base("vitals-ai-plugin", "Vitals / AI plugin detail",
		"One AI plugin: its state and history, probes, latency, errors, models and resources.").
		WithVariable(queryVar("plugin", "AI plugin", `label_values(vitals_ai_plugin_info{`+sel+`}, plugin)`, false)).
		Annotation(dashboard.NewAnnotationQueryBuilder().
			Name("Health transitions").
			Datasource(ds).
			Enable(true).
			IconColor("orange").
			Expr(`sum by (plugin, from, to) (increase(vitals_ai_health_transitions_total{` + plugSel + `}[$__interval])) > 0`)).
		WithRow(row("State")).
		WithPanel(statPanel("Health", "The health engine's state now.", "none",
			instant(healthStateExpr(plugSel)), steps(nil, "text")).Mappings(healthMappings())).
		WithPanel(statPanel("Up", "1 when the last liveness probe passed.", "none",
			instant(`max(vitals_ai_plugin_up{`+plugSel+`})`), steps(nil, "red", 1.0, "green"))).
		WithPanel(statPanel("Models", "Models the server lists.", "none",
			instant(`max(vitals_ai_plugin_models{`+plugSel+`})`), steps(nil, "text"))).
		WithPanel(statPanel("Transitions in range", "Health state changes in the time range.", "none",
			instant(`sum(increase(vitals_ai_health_transitions_total{`+plugSel+`}[$__range]))`), steps(nil, "green", 3.0, "orange"))).
		WithPanel(stateTimeline("Health history", "Health state over the time range; the annotations mark each transition.",
			healthStateExpr(plugSel), "{{plugin}}")).
		WithPanel(table.NewPanelBuilder().Title("Identity").Description("Kind, version and source.").
			Datasource(ds).Height(6).Span(12).
			WithTarget(instant(`max by (plugin, kind, version, source) (vitals_ai_plugin_info{` + plugSel + `})`))).
		WithPanel(table.NewPanelBuilder().Title("Capabilities").Description("1: the plugin can do it.").
			Datasource(ds).Height(6).Span(12).
			WithTarget(instant(`max by (capability) (vitals_ai_plugin_capability{` + plugSel + `})`))).
		WithRow(row("Probes")).
		WithPanel(ts("Latency by probe", "p50, p95 and p99 of each probe.", "s",
			quantiles("vitals_ai_probe_duration_seconds", plugSel, "probe, ")...)).
		WithPanel(ts("Probe results", "Probes per second by probe and result.", "ops",
			q(`sum by (probe, result) (rate(vitals_ai_probe_total{`+plugSel+`}[$__rate_interval]))`, "{{probe}} {{result}}"))).
		WithPanel(ts("Time to first token", "p50, p95 and p99 of the synthetic inference.", "s",
			quantiles("vitals_ai_time_to_first_token_seconds", plugSel, "")...)).
		WithPanel(ts("Output tokens per second", "Of the last synthetic inference.", "none",
			q(`vitals_ai_output_tokens_per_second{`+plugSel+`}`, "tokens/s"))).
		WithPanel(ts("Errors by class", "Failed probe requests per second.", "reqps",
			q(`sum by (class) (rate(vitals_ai_probe_errors_total{`+plugSel+`}[$__rate_interval]))`, "{{class}}"))).
		WithPanel(ts("Transitions", "State changes by from and to.", "none",
			q(`sum by (from, to) (increase(vitals_ai_health_transitions_total{`+plugSel+`}[$__rate_interval]))`, "{{from}} → {{to}}")).
			DrawStyle(common.GraphDrawStyleBars)).
		WithRow(row("Saturation")).
		WithPanel(ts("Requests running and waiting", "As the server reports them: running in its batch or slots, waiting in its queue.", "none",
			q(`vitals_ai_requests_running{`+plugSel+`}`, "running"), q(`vitals_ai_requests_waiting{`+plugSel+`}`, "waiting")).Min(0)).
		WithPanel(ts("KV cache usage", "Share of the server's KV cache in use.", "percentunit",
			q(`vitals_ai_kv_cache_usage_ratio{`+plugSel+`}`, "kv cache")).Min(0).Max(1)).
		WithPanel(ts("Server tokens per second", "Tokens the server generates, all clients, from its own counter (not the probe's).", "none",
			q(`rate(vitals_ai_server_generated_tokens_total{`+plugSel+`}[$__rate_interval])`, "tokens/s")).Min(0)).
		WithPanel(ts("Server requests by result", "Requests the server ended per second, from its own counters.", "reqps",
			q(`sum by (result) (rate(vitals_ai_server_requests_total{`+plugSel+`}[$__rate_interval]))`, "{{result}}")).Min(0)).
		WithRow(row("Resources and models")).
		WithPanel(ts("CPU", "CPU cores used by the plugin's local process.", "none",
			q(`rate(vitals_ai_process_cpu_seconds_total{`+plugSel+`}[$__rate_interval])`, "cores"))).
		WithPanel(ts("Resident memory", "Of the plugin's local process.", "bytes",
			q(`vitals_ai_process_resident_memory_bytes{`+plugSel+`}`, "resident"))).
		WithPanel(ts("Model memory", "Each loaded model, total and VRAM, as the server reports it.", "bytes",
			q(`vitals_ai_model_memory_bytes{`+plugSel+`}`, "{{model}} {{memory}}"))).
		WithPanel(ts("Models loaded", "1 while the server holds the model in memory, 0 while it is known but unloaded (cold).", "none",
			q(`vitals_ai_model_loaded{`+plugSel+`}`, "{{model}}")).Min(0).Max(1))
}

func internals() *dashboard.DashboardBuilder {
	return base("vitals-agent", "Vitals / Agent internals",
		"The agent itself: host plugin states and lifecycle, message bus, health check scheduler, config reloads, CPU and memory.").
		WithRow(row("Host plugins")).
		WithPanel(statPanel("Running", "Host plugins running.", "none",
			instant(`sum(vitals_plugin_state{`+sel+`, state="running"})`), steps(nil, "green"))).
		WithPanel(statPanel("Failed", "Host plugins failed.", "none",
			instant(`sum(vitals_plugin_state{`+sel+`, state="failed"})`), steps(nil, "green", 1.0, "red"))).
		WithPanel(statPanel("Startup", "Time the agent took to start its plugins.", "s",
			instant(`max(vitals_agent_startup_duration_seconds{`+sel+`})`), steps(nil, "green", 5.0, "orange"))).
		WithPanel(statPanel("Last reload ok", "1 when the last config reload was applied.", "none",
			instant(`min(vitals_config_last_reload_successful{`+sel+`})`), steps(nil, "red", 1.0, "green"))).
		WithPanel(table.NewPanelBuilder().Title("Host plugin states").Description("The current state of each host plugin.").
			Datasource(ds).Height(8).Span(12).
			WithTarget(instant(`max by (instance, plugin, state) (vitals_plugin_state{` + sel + `} == 1)`))).
		WithPanel(ts("Plugins by state", "", "none",
			q(`sum by (state) (vitals_plugin_state{`+sel+`})`, "{{state}}")).
			Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))).
		WithPanel(bargauge.NewPanelBuilder().Title("Mean lifecycle step duration").
			Description("Mean duration of each plugin's initialize, start, reload and stop.").
			Datasource(ds).Height(8).Span(12).Unit("s").
			WithTarget(instant(`sum by (plugin, step) (vitals_plugin_lifecycle_duration_seconds_sum{` + sel + `}) / sum by (plugin, step) (vitals_plugin_lifecycle_duration_seconds_count{` + sel + `})`).LegendFormat("{{plugin}} {{step}}").Format(prometheus.PromQueryFormatTimeSeries)).
			DisplayMode(common.BarGaugeDisplayModeBasic).Orientation(common.VizOrientationHorizontal)).
		WithPanel(table.NewPanelBuilder().Title("Lifecycle steps by outcome").Description("Count of steps by plugin, step and outcome.").
			Datasource(ds).Height(8).Span(12).
			WithTarget(instant(`sum by (plugin, step, outcome) (vitals_plugin_lifecycle_steps_total{` + sel + `})`))).
		WithRow(row("Message bus")).
		WithPanel(ts("Bus messages", "Messages per second by direction and topic family.", "ops",
			q(`sum by (direction, family) (rate(vitals_bus_messages_total{`+sel+`}[$__rate_interval]))`, "{{direction}} {{family}}"))).
		WithPanel(ts("Bus bytes", "", "Bps",
			q(`sum by (direction) (rate(vitals_bus_bytes_total{`+sel+`}[$__rate_interval]))`, "{{direction}}"))).
		WithPanel(ts("Bus drops and malformed", "Dropped messages by reason, and malformed ones.", "ops",
			q(`sum by (reason) (rate(vitals_bus_dropped_total{`+sel+`}[$__rate_interval]))`, "dropped {{reason}}"),
			q(`sum by (reason) (rate(vitals_bus_malformed_total{`+sel+`}[$__rate_interval]))`, "malformed {{reason}}"))).
		WithPanel(ts("Bus delivery latency p99", "", "s",
			quantiles("vitals_bus_delivery_latency_seconds", sel, "family, ")[2])).
		WithPanel(ts("Bus connections", "", "none",
			q(`sum by (socket) (vitals_bus_connections{`+sel+`})`, "{{socket}}"))).
		WithPanel(ts("Bus bounds", "Peers the broker disconnected or refused for breaking a bound, and messages and connections it made wait (throttled), by reason.", "ops",
			q(`sum by (reason) (rate(vitals_bus_disconnects_total{`+sel+`}[$__rate_interval]))`, "disconnected {{reason}}"),
			q(`sum by (reason) (rate(vitals_bus_refused_total{`+sel+`}[$__rate_interval]))`, "refused {{reason}}"),
			q(`sum by (reason) (rate(vitals_bus_throttled_total{`+sel+`}[$__rate_interval]))`, "throttled {{reason}}"),
			q(`sum(rate(vitals_bus_accept_errors_total{`+sel+`}[$__rate_interval]))`, "accept errors"))).
		WithRow(row("Scheduler and config")).
		WithPanel(ts("Scheduler lag", "How late health checks start after they are due.", "s",
			quantiles("vitals_scheduler_lag_seconds", sel, "")...)).
		WithPanel(ts("Config reloads", "Reloads by result.", "none",
			q(`sum by (result) (increase(vitals_config_reloads_total{`+sel+`}[$__rate_interval]))`, "{{result}}")).
			DrawStyle(common.GraphDrawStyleBars)).
		WithRow(row("Agent process")).
		WithPanel(ts("Agent CPU", "CPU cores the agent uses.", "none",
			q(`rate(process_cpu_seconds_total{`+sel+`}[$__rate_interval])`, "{{instance}}"))).
		WithPanel(ts("Agent memory", "Resident memory and Go heap in use.", "bytes",
			q(`process_resident_memory_bytes{`+sel+`}`, "{{instance}} resident"),
			q(`go_memstats_heap_inuse_bytes{`+sel+`}`, "{{instance}} heap"))).
		WithPanel(ts("Goroutines", "", "none",
			q(`go_goroutines{`+sel+`}`, "{{instance}}"))).
		WithPanel(table.NewPanelBuilder().Title("Agents").Description("Version of each agent.").
			Datasource(ds).Height(6).Span(12).
			WithTarget(instant(`max by (instance, version, goversion) (vitals_build_info{` + sel + `})`)))
}
