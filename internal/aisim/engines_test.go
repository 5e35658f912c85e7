package aisim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vitals-dev/vitals/internal/aisim"
	"github.com/vitals-dev/vitals/probes"
)

func TestVLLMSleep(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindVLLM, Version: "0.11.0"})
	const req = `{"model":"sim-chat","prompt":"x","max_tokens":2}`
	e.must(t, "POST", "/v1/completions", req, 200)
	if b := e.must(t, "GET", "/is_sleeping", "", 200); string(b) != `{"is_sleeping":false}` {
		t.Fatalf("is_sleeping %s", b)
	}
	e.must(t, "POST", "/sleep?level=2", "", 200)
	if b := e.must(t, "GET", "/is_sleeping", "", 200); string(b) != `{"is_sleeping":true}` {
		t.Fatalf("is_sleeping %s", b)
	}
	e.must(t, "GET", "/health", "", 200)
	// Asleep, a request waits in the queue and makes no token.
	done := make(chan int, 1)
	go func() {
		st, _, _ := e.do(context.Background(), "POST", "/v1/completions", req)
		done <- st
	}()
	waitFor(t, "the request to wait", func() bool {
		fams := scrape(t, e.c, e.url+"/metrics")
		w, _, _ := series(fams, "vllm:num_requests_waiting", nil)
		s2, _, _ := series(fams, "vllm:engine_sleep_state", map[string]string{"sleep_state": "discard_all"})
		awake, _, _ := series(fams, "vllm:engine_sleep_state", map[string]string{"sleep_state": "awake"})
		return w == 1 && s2 == 1 && awake == 0
	})
	select {
	case st := <-done:
		t.Fatalf("a request was answered (%d) while asleep", st)
	default:
	}
	e.must(t, "POST", "/wake_up", "", 200)
	if st := <-done; st != 200 {
		t.Fatalf("after wake_up: %d", st)
	}
	e.must(t, "POST", "/sleep?level=9", "", 500)
	if e.sim.Knobs().SleepLevel != 0 {
		t.Fatal("a bad level put it to sleep")
	}
	e.sim.SetSleepLevel(1)
	if b := e.must(t, "GET", "/is_sleeping", "", 200); string(b) != `{"is_sleeping":true}` {
		t.Fatalf("after SetSleepLevel(1): %s", b)
	}
}

func TestLlamaCppModes(t *testing.T) {
	const chat = `{"messages":[{"role":"user","content":"x"}]}`
	const rerank = `{"query":"red apple","documents":["a green pear","a red apple","red"],"top_n":2}`
	t.Run("embeddings", func(t *testing.T) {
		e := start(t, aisim.Config{Kind: probes.KindLlamaCpp, ModelType: "embedding"})
		b := e.must(t, "POST", "/v1/chat/completions", chat, 501)
		if string(b) != "{\"error\":{\"code\":501,\"message\":\"This server does not support completions. Start it without `--embeddings`\",\"type\":\"not_supported_error\"}}" {
			t.Fatalf("chat: %s", b)
		}
		e.must(t, "POST", "/v1/embeddings", `{"input":"x"}`, 200)
		b = e.must(t, "POST", "/v1/rerank", rerank, 501)
		if !bytes.Contains(b, []byte("Start it with `--reranking`")) {
			t.Fatalf("rerank: %s", b)
		}
	})
	t.Run("reranking", func(t *testing.T) {
		e := start(t, aisim.Config{Kind: probes.KindLlamaCpp, ModelType: "reranker"})
		e.must(t, "POST", "/chat/completions", chat, 501)
		e.must(t, "POST", "/v1/embeddings", `{"input":"x"}`, 400)
		var out struct {
			Results []struct {
				Index int     `json:"index"`
				Score float64 `json:"relevance_score"`
			} `json:"results"`
		}
		if err := json.Unmarshal(e.must(t, "POST", "/v1/rerank", rerank, 200), &out); err != nil {
			t.Fatal(err)
		}
		if len(out.Results) != 2 || out.Results[0].Index != 1 || out.Results[0].Score < out.Results[1].Score {
			t.Fatalf("results %+v", out.Results)
		}
		b := e.must(t, "POST", "/rerank", `{"query":"q","texts":["q","z"]}`, 200)
		if !bytes.HasPrefix(b, []byte(`[{"index":0,"score":`)) {
			t.Fatalf("TEI shape: %s", b)
		}
		e.must(t, "POST", "/v1/rerank", `{"documents":["a"]}`, 400)
	})
	t.Run("chat", func(t *testing.T) {
		e := start(t, aisim.Config{Kind: probes.KindLlamaCpp})
		e.must(t, "POST", "/v1/rerank", rerank, 501)
		e.must(t, "POST", "/v1/embeddings", `{"input":"x"}`, 501)
		var props map[string]any
		if err := json.Unmarshal(e.must(t, "GET", "/props", "", 200), &props); err != nil || props["total_slots"] != 4.0 {
			t.Fatalf("props %v, %v", props, err)
		}
		e.sim.SetSlots(2)
		e.sim.SetSleepLevel(1)
		if err := json.Unmarshal(e.must(t, "GET", "/props", "", 200), &props); err != nil || props["total_slots"] != 2.0 || props["is_sleeping"] != true {
			t.Fatalf("props after knobs %v, %v", props, err)
		}
	})
}

// TestRename: a model renamed at run time is listed, served and labelled
// by its new name, and the old one is gone.
func TestRename(t *testing.T) {
	tests := []struct {
		kind           probes.Kind
		list, old, new string // list path; a request body with the old and the new name
		path           string
		listed         string
	}{
		{probes.KindVLLM, "/v1/models", `{"model":"sim-chat","prompt":"x"}`, `{"model":"renamed","prompt":"x"}`, "/v1/completions", `"id":"renamed"`},
		{probes.KindOllama, "/api/tags", `{"model":"tiny","prompt":"x","stream":false}`, `{"model":"renamed","prompt":"x","stream":false}`, "/api/generate", `"name":"renamed:latest"`},
		{probes.KindOpenAI, "/v1/models", `{"model":"sim-chat","messages":[{"role":"user","content":"x"}]}`, `{"model":"renamed","messages":[{"role":"user","content":"x"}]}`, "/v1/chat/completions", `"id":"renamed"`},
		{aisim.KindSGLang, "/v1/models", `{"model":"aisim/tiny-sglang","prompt":"x"}`, `{"model":"renamed","prompt":"x"}`, "/v1/completions", `"id":"renamed"`},
		{probes.KindLlamaCpp, "/v1/models", "", "", "", `"id":"renamed"`},
		{probes.KindTGI, "/info", "", "", "", `"model_id":"renamed"`},
		{probes.KindTEI, "/info", "", "", "", `"model_id":"renamed"`},
		{probes.KindKServe, "/v2/models/renamed", "", "", "", `"name":"renamed"`},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			e := start(t, aisim.Config{Kind: tt.kind})
			if tt.path != "" {
				e.must(t, "POST", tt.path, tt.old, 200)
			}
			e.must(t, "POST", "/aisim/knobs", `{"model_name":"renamed"}`, 200)
			if b := e.must(t, "GET", tt.list, "", 200); !strings.Contains(string(b), tt.listed) {
				t.Fatalf("%s after the rename: %s", tt.list, b)
			}
			if e.sim.Stats().Model != "renamed" && e.sim.Stats().Model != "renamed:latest" {
				t.Fatalf("stats model %q", e.sim.Stats().Model)
			}
			if tt.path != "" {
				e.must(t, "POST", tt.path, tt.old, 404)
				e.must(t, "POST", tt.path, tt.new, 200)
			}
			e.sim.SetModelName("")
			if tt.path != "" {
				e.must(t, "POST", tt.path, tt.old, 200)
			}
		})
	}
	// The metrics follow the name.
	e := start(t, aisim.Config{Kind: probes.KindVLLM, Version: "0.11.0", Knobs: aisim.Knobs{ModelName: "m2"}})
	e.must(t, "POST", "/v1/completions", `{"model":"m2","prompt":"x","max_tokens":1}`, 200)
	if v, _, ok := series(scrape(t, e.c, e.url+"/metrics"), "vllm:generation_tokens_total", map[string]string{"model_name": "m2"}); !ok || v != 1 {
		t.Fatalf("generation tokens of m2: %v, %v", v, ok)
	}
}

// TestSlotsQueue: requests past the slots wait, and /slots shows the ones
// running with the tokens they have made.
func TestSlotsQueue(t *testing.T) {
	e := start(t, aisim.Config{Kind: probes.KindLlamaCpp, Knobs: aisim.Knobs{Slots: 1, TokenInterval: aisim.Duration(5 * time.Millisecond)}})
	e.sim.SetStuck(true)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, _, err := e.do(context.Background(), "POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}]}`)
			errs <- err
		}()
	}
	waitFor(t, "one running, one waiting", func() bool { st := e.sim.Stats(); return st.Running == 1 && st.Waiting == 1 })
	if b := e.must(t, "GET", "/slots", "", 200); bytes.Count(b, []byte(`"is_processing":true`)) != 1 {
		t.Fatalf("slots %s", b)
	}
	e.sim.SetStuck(false)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if st := e.sim.Stats(); st.Running != 0 || st.Waiting != 0 || st.CompletionTokens != 18 {
		t.Fatalf("stats %+v", st)
	}
}
