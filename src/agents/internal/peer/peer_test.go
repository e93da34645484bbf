package peer

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"nuclab.io/agents/internal/discovery"
)

// lines is a goroutine-safe stdout.
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lines) Write(b []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.Write(b) }
func (l *lines) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.String() }

type running struct {
	p    *Peer
	m    *Metrics
	out  *lines
	done chan error
}

// listen reserves loopback listeners, so every peer's address is known before any starts.
func listen(t *testing.T, n int) []net.Listener {
	t.Helper()
	lns := make([]net.Listener, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	return lns
}

func target(name string, ln net.Listener) discovery.Endpoint {
	a := ln.Addr().(*net.TCPAddr)
	return discovery.Endpoint{Name: name, Host: "127.0.0.1", Port: a.Port}
}

func start(t *testing.T, ctx context.Context, cfg *Config, ln net.Listener) *running {
	t.Helper()
	cfg.Port = ln.Addr().(*net.TCPAddr).Port
	if cfg.RediscoverS == 0 {
		cfg.RediscoverS = 30
	}
	r := &running{m: NewMetrics("test", cfg.Name), out: &lines{}, done: make(chan error, 1)}
	r.p = New(cfg, r.m, LimitsFor(16<<20), r.out)
	go func() { r.done <- r.p.Run(ctx, ln) }()
	return r
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGossipOverARingDeliversEveryMessageToEveryPeer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	names := []string{"p0", "p1", "p2", "p3"}
	lns := listen(t, len(names))
	var targets []discovery.Endpoint
	for i, n := range names {
		targets = append(targets, target(n, lns[i]))
	}
	peers := []*running{}
	for i, n := range names {
		// connect-to 1: a pure ring, so most messages reach a peer only by relaying.
		cfg := &Config{Name: n, Experiment: "test", Targets: targets, ConnectTo: 1, MsgSize: 100, MsgRateMS: 20, Count: 5}
		peers = append(peers, start(t, ctx, cfg, lns[i]))
	}
	eventually(t, "every peer received 15 messages", func() bool {
		for _, r := range peers {
			if testutil.ToFloat64(r.m.Received) != 15 {
				return false
			}
		}
		return true
	})
	time.Sleep(200 * time.Millisecond) // nothing more arrives
	dups := 0.0
	for _, r := range peers {
		if got := testutil.ToFloat64(r.m.Received); got != 15 {
			t.Errorf("%s received %v", r.p.cfg.Name, got)
		}
		if got := testutil.ToFloat64(r.m.Sent); got != 5 {
			t.Errorf("%s sent %v", r.p.cfg.Name, got)
		}
		if n := testutil.CollectAndCount(r.m.Latency); n != 1 {
			t.Errorf("latency series: %d", n)
		}
		dups += testutil.ToFloat64(r.m.Duplicate)
		sending := strings.Count(r.out.String(), "sending at ")
		if sending != 5 || !strings.Contains(r.out.String(), " seq=5 size=100\n") {
			t.Errorf("%s printed %d lines: %q", r.p.cfg.Name, sending, r.out.String())
		}
		if err := r.p.Health().Ready(); err != nil {
			t.Errorf("%s not ready: %v", r.p.cfg.Name, err)
		}
	}
	if dups == 0 {
		t.Error("a ring carries messages both ways: some arrive twice")
	}
	cancel()
	for _, r := range peers {
		if err := <-r.done; err != nil {
			t.Errorf("stop: %v", err)
		}
	}
}

func TestALateJoinerGetsTheHistoryAndBecomesReady(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lns := listen(t, 3)
	a, b, c := target("a", lns[0]), target("b", lns[1]), target("c", lns[2])
	// b never publishes (the first message is an hour away) and dials no one.
	rb := start(t, ctx, &Config{Name: "b", Targets: []discovery.Endpoint{a}, ConnectTo: 0, MsgSize: 10, MsgRateMS: 3_600_000}, lns[1])
	ra := start(t, ctx, &Config{Name: "a", Targets: []discovery.Endpoint{b}, ConnectTo: 1, MsgSize: 10, MsgRateMS: 10, Count: 3}, lns[0])
	eventually(t, "b has a's 3 messages", func() bool { return testutil.ToFloat64(rb.m.Received) == 3 })
	eventually(t, "a's publisher is done", func() bool { return testutil.ToFloat64(ra.m.Sent) == 3 })

	cfg := &Config{Name: "c", Targets: []discovery.Endpoint{b}, ConnectTo: 1, MsgSize: 10, MsgRateMS: 3_600_000}
	cfg.Port = lns[2].Addr().(*net.TCPAddr).Port
	rc := &running{m: NewMetrics("", "c"), out: &lines{}, done: make(chan error, 1)}
	rc.p = New(cfg, rc.m, LimitsFor(16<<20), rc.out)
	if err := rc.p.Health().Ready(); err == nil {
		t.Error("ready before it looked for its peers")
	}
	go func() { rc.done <- rc.p.Run(ctx, lns[2]) }()
	eventually(t, "c got the history from b", func() bool { return testutil.ToFloat64(rc.m.Received) == 3 })
	if err := rc.p.Health().Ready(); err != nil {
		t.Errorf("c is connected but not ready: %v", err)
	}
	if err := rc.p.Health().Live(); err != nil {
		t.Errorf("c not live: %v", err)
	}
	_ = c
	// a reconnecting to b would get its own messages back: dropped as its own, counted duplicate.
	if got := testutil.ToFloat64(ra.m.Received); got != 0 {
		t.Errorf("a received its own messages: %v", got)
	}
}

func TestAConnectionThatDoesNotSpeakGossipIsDropped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lns := listen(t, 1)
	r := start(t, ctx, &Config{Name: "solo", Targets: []discovery.Endpoint{{Name: "solo", Host: "127.0.0.1", Port: 1}}, ConnectTo: 3, MsgSize: 10, MsgRateMS: 1000}, lns[0])
	nc, err := net.Dial("tcp", lns[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_, _ = nc.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(nc); err != nil {
		t.Errorf("the peer did not close the connection: %v", err)
	}
	eventually(t, "the connection is gone", func() bool { return r.p.Connections() == 0 })
	// Its only target is itself: a 1-peer experiment, ready at once.
	if err := r.p.Health().Ready(); err != nil {
		t.Errorf("1-peer experiment not ready: %v", err)
	}
}

// twoPods listens as two pods do: discovery dials every pod on the peer's own port, so one port
// on two loopback addresses (Linux routes all of 127.0.0.0/8 to lo).
func twoPods(t *testing.T) (first, second net.Listener, port int) {
	t.Helper()
	first = listen(t, 1)[0]
	port = first.Addr().(*net.TCPAddr).Port
	second, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", itoa(port)))
	if err != nil {
		t.Fatalf("127.0.0.2:%d: %v", port, err)
	}
	return first, second, port
}

func TestDiscoveryThroughTheResolverFindsTheStatefulSetsPods(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, second, port0 := twoPods(t)
	lns := []net.Listener{first, second}
	addrs := map[string]string{"exp-0.svc": "127.0.0.1", "exp-1.svc": "127.0.0.2"}
	resolve := func(h string) []string {
		if a, ok := addrs[h]; ok {
			return []string{a}
		}
		return nil
	}
	var rs []*running
	for i := range 2 {
		cfg := &Config{Name: "exp-" + itoa(i), StatefulSet: "exp", Service: "svc", Peers: 2, ConnectTo: 3, MsgSize: 10, MsgRateMS: 50, Count: 2, RediscoverS: 1}
		cfg.Port = port0
		r := &running{m: NewMetrics("", cfg.Name), out: &lines{}, done: make(chan error, 1)}
		r.p = New(cfg, r.m, LimitsFor(16<<20), r.out)
		r.p.resolve = resolve
		go func(ln net.Listener) { r.done <- r.p.Run(ctx, ln) }(lns[i])
		rs = append(rs, r)
	}
	eventually(t, "both got the other's 2 messages", func() bool {
		return testutil.ToFloat64(rs[0].m.Received) == 2 && testutil.ToFloat64(rs[1].m.Received) == 2
	})
}

func itoa(i int) string { return strconv.Itoa(i) }

// A StatefulSet's pods appear in DNS one by one: the peer that starts first finds no neighbour
// and must look again within seconds, not a whole --rediscover period (30 s) later.
func TestAPeerThatStartsBeforeItsNeighbourFindsItWithinSeconds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, second, port0 := twoPods(t)
	var mu sync.Mutex
	addrs := map[string]string{"exp-0.svc": "127.0.0.1"} // exp-1 is not in DNS yet
	resolve := func(h string) []string {
		mu.Lock()
		defer mu.Unlock()
		if a, ok := addrs[h]; ok {
			return []string{a}
		}
		return nil
	}
	cfg := &Config{Name: "exp-0", StatefulSet: "exp", Service: "svc", Peers: 2, ConnectTo: 1, MsgSize: 10, MsgRateMS: 3_600_000, RediscoverS: 30}
	cfg.Port = port0
	r := &running{m: NewMetrics("", cfg.Name), out: &lines{}, done: make(chan error, 1)}
	r.p = New(cfg, r.m, LimitsFor(16<<20), r.out)
	r.p.resolve = resolve
	go func() { r.done <- r.p.Run(ctx, first) }()
	time.Sleep(1500 * time.Millisecond) // exp-0 has looked and found nobody
	mu.Lock()
	addrs["exp-1.svc"] = "127.0.0.2"
	mu.Unlock()
	accepted := make(chan struct{})
	go func() {
		if nc, err := second.Accept(); err == nil {
			close(accepted)
			nc.Close()
		}
	}()
	select {
	case <-accepted:
	case <-time.After(6 * time.Second): // looks again after 1, 2, 4 s
		t.Fatalf("exp-0 did not dial exp-1 within 6 s of its DNS record: %s", r.out.String())
	}
}

func TestOnlyAPeerThatSpeaksGossipMakesItReady(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lns := listen(t, 2)
	nobody := target("b", lns[1])
	lns[1].Close() // b never answers: a cannot dial out
	r := start(t, ctx, &Config{Name: "a", Targets: []discovery.Endpoint{nobody}, ConnectTo: 1, MsgSize: 10, MsgRateMS: 3_600_000}, lns[0])
	eventually(t, "a looked for its peers", func() bool { return r.p.Health().Ready() != nil && r.p.health.others.Load() == 1 })
	nc, err := net.Dial("tcp", lns[0].Addr().String()) // a TCP health check, say
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	eventually(t, "a has the connection", func() bool { return r.p.Connections() == 1 })
	if err := r.p.Health().Ready(); err == nil || !strings.Contains(err.Error(), "no connection to any of 1 other peer(s)") {
		t.Errorf("ready through a connection that sent nothing: %v", err)
	}
	if _, err := nc.Write(Encode([]byte("b"), 1, uint64(time.Now().UnixNano()), []byte("hi"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a peer that sent a frame has joined", func() bool { return r.p.Health().Ready() == nil })
	if got := testutil.ToFloat64(r.m.Received); got != 1 {
		t.Errorf("received %v", got)
	}
}
