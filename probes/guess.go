package probes

import "strings"

// GuessCapabilities infers capabilities from a model's name, for servers
// that list models without saying what they can do (plain OpenAI-compatible
// servers, vLLM, KServe). It is a heuristic: rerankers and embedders are
// recognised by common name fragments, everything else is taken for a
// generative model (chat and completion), with vision for names of
// vision-language models.
func GuessCapabilities(name string) []Capability {
	n := strings.ToLower(name)
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(n, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("rerank", "cross-encoder"):
		return []Capability{CapRerank}
	case has("embed", "bge-", "e5-", "gte-", "minilm", "mpnet", "sentence-t"):
		return []Capability{CapEmbeddings}
	case has("classif", "sentiment", "nli", "toxic"):
		return []Capability{CapClassification}
	}
	caps := []Capability{CapChat, CapCompletion}
	if has("vision", "llava", "-vl", "vl-", "pixtral", "moondream") {
		caps = append(caps, CapVision)
	}
	return caps
}
