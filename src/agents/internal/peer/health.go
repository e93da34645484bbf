package peer

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Health is what /healthz (liveness) and /readyz (readiness) answer.
//
// Live: every loop that beats has beaten within Stale and none has died. The loops wake at least
// once a second (long sleeps are cut into slices), so a silence of Stale means a stuck process.
// Ready: listening, and joined: connected to at least one other peer when the experiment has
// others (a 1-peer experiment is ready at once).
type Health struct {
	Stale time.Duration

	mu    sync.Mutex
	beats map[string]time.Time
	dead  map[string]bool

	listening atomic.Bool
	others    atomic.Int64
	conns     func() int
}

// NewHealth watches nothing yet.
func NewHealth() *Health {
	h := &Health{Stale: 30 * time.Second, beats: map[string]time.Time{}, dead: map[string]bool{}}
	h.others.Store(-1) // unknown until the first discovery
	return h
}

// Loop registers a loop and returns its beat.
func (h *Health) Loop(name string) func() {
	beat := func() {
		h.mu.Lock()
		if _, watched := h.beats[name]; watched {
			h.beats[name] = time.Now()
		}
		h.mu.Unlock()
	}
	h.mu.Lock()
	h.beats[name] = time.Now()
	h.mu.Unlock()
	return beat
}

// Done says a loop ended as it should (a --count publisher that published everything).
func (h *Health) Done(name string) {
	h.mu.Lock()
	delete(h.beats, name)
	h.mu.Unlock()
}

// Dead says a loop ended that should not have.
func (h *Health) Dead(name string) {
	h.mu.Lock()
	h.dead[name] = true
	h.mu.Unlock()
}

func (h *Health) SetListening(v bool) { h.listening.Store(v) }
func (h *Health) SetOthers(n int)     { h.others.Store(int64(n)) }

// Live is nil when alive, else what is wrong.
func (h *Health) Live() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.beats))
	for n := range h.beats {
		names = append(names, n)
	}
	sort.Strings(names)
	for n := range h.dead {
		return fmt.Errorf("the %s loop stopped", n)
	}
	for _, n := range names {
		if quiet := time.Since(h.beats[n]); quiet > h.Stale {
			return fmt.Errorf("the %s loop has not run for %s", n, quiet.Round(time.Second))
		}
	}
	return nil
}

// Ready is nil when ready, else why not.
func (h *Health) Ready() error {
	if err := h.Live(); err != nil {
		return err
	}
	if !h.listening.Load() {
		return fmt.Errorf("not listening")
	}
	others := h.others.Load()
	if others < 0 {
		return fmt.Errorf("looking for the other peers")
	}
	if others > 0 && (h.conns == nil || h.conns() == 0) {
		return fmt.Errorf("no connection to any of %d other peer(s) yet", others)
	}
	return nil
}
