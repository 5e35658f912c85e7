package aisim

import (
	"context"
	"sync"
	"time"
)

// The simulated engine: every inference request is a job that waits in
// the queue until one of Knobs.Slots slots is free (counted as waiting),
// then runs (counted as running): it prefills its prompt and generates its
// tokens one at a time, each after the slow-first-token delay or the token
// interval. Only tokens really generated move the tokens counter, so the
// metrics endpoints report the work the server did. Stuck and sleep stall
// running jobs between tokens (running > 0, counter frozen); sleep also
// holds new jobs in the queue. Background load (Knobs.Load) is jobs the
// server makes for itself, served through the same queue and slots.

// defaultSlots is the number of slots when Knobs.Slots is 0 (llama.cpp's
// --parallel 4, the total_slots its /props reports).
const defaultSlots = 4

// backgroundInterval paces background jobs when Knobs.TokenInterval is 0,
// so that load never spins.
const backgroundInterval = 10 * time.Millisecond

// backgroundPrompt is the prompt length of a background job, in tokens.
const backgroundPrompt = 4

// Outcomes of a job, the label values the metrics derive theirs from.
const (
	outcomeStop       = "stop"       // finished: end of answer
	outcomeLength     = "length"     // finished: token limit
	outcomeAbort      = "abort"      // the client went away first
	outcomeError      = "error"      // injected server error
	outcomeValidation = "validation" // the request was refused as invalid
)

func (k Knobs) slots() int {
	if k.Slots > 0 {
		return k.Slots
	}
	return defaultSlots
}

// job is one admitted request.
type job struct {
	s      *Server
	ctx    context.Context
	id     int64
	model  string
	slot   int
	prompt int
	tokens int
	start  time.Time
	pace   time.Duration // the token interval floor (background jobs)
	runner *ollamaRunner // the Ollama model it holds
	first  bool
	ended  bool
}

// changedLocked returns a channel closed at the next state change.
func (s *Server) changedLocked() <-chan struct{} { return s.changed }

// notifyLocked wakes every waiter on the state.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// await waits for the next state change. It unlocks s.mu while it waits
// and locks it again before it returns.
func (s *Server) await(ctx context.Context) error {
	ch := s.changedLocked()
	s.mu.Unlock()
	defer s.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrClosed
	}
}

// admit queues a request for model with a prompt of prompt tokens until a
// slot is free and the engine is awake, then runs it.
func (s *Server) admit(ctx context.Context, model string, prompt int) (*job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.waiting++
	s.waitingBy[model]++
	defer func() {
		s.waiting--
		if s.waitingBy[model]--; s.waitingBy[model] == 0 {
			delete(s.waitingBy, model)
		}
	}()
	for s.knobs.SleepLevel > 0 || len(s.slotJobs) >= s.knobs.slots() {
		if err := s.await(ctx); err != nil {
			return nil, err
		}
	}
	slot := 0
	for s.slotJobs[slot] != nil {
		slot++
	}
	j := &job{s: s, ctx: ctx, id: s.seq.Add(1), model: model, slot: slot, prompt: prompt, start: time.Now(), first: true}
	s.slotJobs[slot] = j
	s.promptTokens += int64(prompt)
	return j, nil
}

// stall holds a running job while the engine is stuck or asleep.
func (j *job) stall() error {
	s := j.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.knobs.Stuck || s.knobs.SleepLevel > 0 {
		if err := s.await(j.ctx); err != nil {
			return err
		}
	}
	return nil
}

// prefill waits the slow-first-token delay of a job that generates no
// tokens (embeddings, rerank, classification).
func (j *job) prefill() error {
	d := time.Duration(j.s.Knobs().SlowFirstToken)
	if err := j.s.wait(j.ctx, d); err != nil {
		return err
	}
	j.first = false
	return j.stall()
}

// next generates one token: it waits the slow-first-token delay before
// the first and the token interval before the others, stalls while the
// engine is stuck or asleep, and counts the token.
func (j *job) next() error {
	k := j.s.Knobs()
	d := max(time.Duration(k.TokenInterval), j.pace)
	if j.first {
		d = max(time.Duration(k.SlowFirstToken), j.pace)
	}
	if err := j.s.wait(j.ctx, d); err != nil {
		return err
	}
	if err := j.stall(); err != nil {
		return err
	}
	j.first = false
	j.tokens++
	j.s.mu.Lock()
	j.s.genTokens++
	j.s.genSeconds += d.Seconds()
	j.s.mu.Unlock()
	return nil
}

// end frees the job's slot and records its outcome; a job whose client
// went away is recorded as aborted. It is safe to call more than once.
func (j *job) end(outcome string) {
	if j.ended {
		return
	}
	j.ended = true
	if j.ctx.Err() != nil {
		outcome = outcomeAbort
	}
	s := j.s
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.slotJobs, j.slot)
	if j.runner != nil {
		s.ollamaReleaseLocked(j.runner)
	}
	s.recordLocked(j.model, outcome, j.tokens, time.Since(j.start))
	s.notifyLocked()
}

// record counts a request that ended without a job (refused before it
// was admitted).
func (s *Server) record(model, outcome string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recordLocked(model, outcome, 0, 0)
}

func (s *Server) recordLocked(model, outcome string, tokens int, took time.Duration) {
	s.outcomes[outcomeKey{model, outcome}]++
	if outcome == outcomeStop || outcome == outcomeLength {
		s.durationUS[model] += took.Microseconds()
		if s.genHist != nil {
			s.genHist.Observe(float64(tokens))
		}
	}
}

type outcomeKey struct{ model, outcome string }

// kvTokensLocked is the number of tokens the running jobs hold in the KV
// cache.
func (s *Server) kvTokensLocked() int {
	n := 0
	for _, j := range s.slotJobs {
		n += j.prompt + j.tokens
	}
	return n
}

// load runs background jobs: one goroutine per job the knobs ask for.
type load struct {
	mu      sync.Mutex
	cancels []context.CancelFunc
	wg      sync.WaitGroup
}

// reconcileLoad starts or stops background jobs to match Knobs.Load.
func (s *Server) reconcileLoad() {
	want := s.Knobs().Load
	s.bg.mu.Lock()
	defer s.bg.mu.Unlock()
	select {
	case <-s.done:
		want = 0
	default:
	}
	for len(s.bg.cancels) > want {
		n := len(s.bg.cancels) - 1
		s.bg.cancels[n]()
		s.bg.cancels = s.bg.cancels[:n]
	}
	for len(s.bg.cancels) < want {
		ctx, cancel := context.WithCancel(context.Background())
		s.bg.cancels = append(s.bg.cancels, cancel)
		s.bg.wg.Add(1)
		go func() {
			defer s.bg.wg.Done()
			s.background(ctx)
		}()
	}
}

// background serves one background job after another until ctx ends or
// the server closes.
func (s *Server) background(ctx context.Context) {
	for ctx.Err() == nil {
		j, err := s.admit(ctx, s.mainModel(), backgroundPrompt)
		if err != nil {
			return
		}
		j.pace = backgroundInterval
		if j.generate(reply, nil) != nil {
			j.end(outcomeAbort)
			return
		}
		j.end(outcomeStop)
	}
}
