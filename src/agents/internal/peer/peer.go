// Package peer is nuclab's default experiment workload: a small gossip network over TCP.
//
// Each peer connects to ConnectTo others (the next ones in sorted ring order, so the peers always
// form one connected network), publishes a MsgSize-byte message every MsgRateMS ms, relays every
// message it sees for the first time to all its other connections, and exports sent / received /
// duplicate counts and delivery latency (sender's wall clock to receiver's: on one machine exact,
// across nodes as good as their NTP). One line "sending at <UTC time> seq=N size=S" on stdout per
// published message, which the logs dashboard counts.
package peer

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"nuclab.io/agents/internal/discovery"
)

// Bounds of what a peer keeps; Limits derives them from the container's memory limit.
type Limits struct {
	HistoryFrames int // frames replayed to a new connection
	HistoryBytes  int
	SeenIDs       int // message ids remembered for deduplication
	HighWater     int // a publisher waits until each connection has at most this much queued
	ReadBuffer    int
}

// LimitsFor sizes the caches for a memory limit in bytes (0 = none): a sixteenth of it for the
// history (32 MiB at most, as the Python peer had), ids at ~24 bytes each in a 512th.
func LimitsFor(memLimit int64) Limits {
	l := Limits{HistoryFrames: 2048, HistoryBytes: 32 << 20, SeenIDs: 200_000, HighWater: 64 << 10, ReadBuffer: 4096}
	if memLimit > 0 {
		l.HistoryBytes = int(min(max(memLimit/16, 256<<10), 32<<20))
		l.SeenIDs = int(min(max(memLimit/512, 8*int64(l.HistoryFrames)), 200_000))
	}
	return l
}

// Logf writes a log line to stderr (stdout carries only the "sending at" lines).
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), fmt.Sprintf(format, args...))
}

// Peer is one running peer.
type Peer struct {
	cfg    *Config
	m      *Metrics
	lim    Limits
	origin []byte
	out    io.Writer
	health *Health

	mu        sync.Mutex
	seen      *Seen
	history   *History
	conns     map[*conn]struct{}
	published int64

	outbound map[string]bool    // host:port dialled (touched by the discovery loop only)
	resolve  discovery.Resolver // nil: the system's
	wg       sync.WaitGroup
}

// New prepares a peer; out receives the "sending at" lines (os.Stdout in the command).
func New(cfg *Config, m *Metrics, lim Limits, out io.Writer) *Peer {
	p := &Peer{
		cfg: cfg, m: m, lim: lim, origin: []byte(cfg.Name), out: out, health: NewHealth(),
		seen: NewSeen(lim.SeenIDs), history: NewHistory(lim.HistoryFrames, lim.HistoryBytes),
		conns: map[*conn]struct{}{}, outbound: map[string]bool{},
	}
	p.health.conns = p.joined
	return p
}

// Health is the peer's liveness and readiness.
func (p *Peer) Health() *Health { return p.health }

// Connections is the number of open gossip connections.
func (p *Peer) Connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// joined counts the connections to other peers: the ones this peer dialled, and accepted ones
// that sent a gossip frame (a TCP health check or a port scan does not make a peer ready).
func (p *Peer) joined() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.conns {
		if c.joined.Load() {
			n++
		}
	}
	return n
}

// A gossip connection: one reader (the serve goroutine) and one writer goroutine that drains a
// queue of shared, immutable frames with writev.
type conn struct {
	nc      net.Conn
	mu      sync.Mutex
	queue   [][]byte
	pending int
	closed  bool
	joined  atomic.Bool
	ready   chan struct{} // wakes the writer
	drained chan struct{} // wakes a waiting publisher
}

func newConn(nc net.Conn) *conn {
	return &conn{nc: nc, ready: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// send queues a frame; false when the connection is closed. A connection that falls behind by
// more than maxPending bytes (a peer that stopped reading) is closed: its peer reconnects and
// gets the history again, and memory stays bounded.
func (c *conn) send(frame []byte, maxPending int) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.queue = append(c.queue, frame)
	c.pending += len(frame)
	slow := c.pending > maxPending && len(c.queue) > 1
	c.mu.Unlock()
	if slow {
		Logf("closing %s: more than %d bytes queued (the other side does not read)", c.nc.RemoteAddr(), maxPending)
		c.close()
		return false
	}
	notify(c.ready)
	return true
}

func (c *conn) close() {
	c.mu.Lock()
	already := c.closed
	c.closed, c.queue, c.pending = true, nil, 0
	c.mu.Unlock()
	if !already {
		c.nc.Close()
		notify(c.ready)
		notify(c.drained)
	}
}

func (c *conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *conn) queued() (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending, c.closed
}

func (c *conn) writeLoop() {
	var spare [][]byte
	for range c.ready {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		batch := c.queue
		c.queue = spare[:0]
		c.mu.Unlock()
		size := 0
		for _, f := range batch {
			size += len(f)
		}
		bufs := net.Buffers(batch)
		_, err := bufs.WriteTo(c.nc)
		clear(batch)
		spare = batch[:0]
		c.mu.Lock()
		if !c.closed {
			c.pending -= size
		}
		c.mu.Unlock()
		notify(c.drained)
		if err != nil {
			c.close()
			return
		}
	}
}

func (p *Peer) maxPending() int {
	frame := HeaderSize + len(p.origin) + p.cfg.MsgSize
	return 2*p.lim.HistoryBytes + 4*frame
}

// serve runs one connection until it closes: replay the history, then read, count and relay.
func (p *Peer) serve(nc net.Conn, dialled bool) {
	c := newConn(nc)
	c.joined.Store(dialled)
	go c.writeLoop()
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.m.Connections.Set(float64(len(p.conns)))
	for _, f := range p.history.Frames() { // the receiver drops what it already has
		if c.send(f, p.maxPending()+p.history.Bytes()) {
			p.m.BytesSent.Add(float64(len(f)))
		}
	}
	p.mu.Unlock()
	defer func() {
		c.close()
		p.mu.Lock()
		delete(p.conns, c)
		p.m.Connections.Set(float64(len(p.conns)))
		p.mu.Unlock()
	}()

	r := bufio.NewReaderSize(nc, p.lim.ReadBuffer)
	head := make([]byte, HeaderSize)
	origin := make([]byte, 0, 64)
	for {
		if _, err := io.ReadFull(r, head); err != nil {
			return
		}
		h, ok := DecodeHeader(head)
		if !ok {
			Logf("dropping a connection that does not speak nuclab gossip (%s)", nc.RemoteAddr())
			return
		}
		c.joined.Store(true)
		origin = origin[:h.OriginLn]
		if _, err := io.ReadFull(r, origin); err != nil {
			return
		}
		self := string(origin) == p.cfg.Name
		p.mu.Lock()
		known := self || p.seen.Has(origin, h.Seq)
		p.mu.Unlock()
		if known { // skip the payload without keeping it
			if _, err := r.Discard(int(h.Size)); err != nil {
				return
			}
			p.m.BytesReceived.Add(float64(HeaderSize + len(origin) + int(h.Size)))
			p.m.Duplicate.Inc()
			continue
		}
		frame := make([]byte, HeaderSize+len(origin)+int(h.Size))
		copy(frame, head)
		copy(frame[HeaderSize:], origin)
		if _, err := io.ReadFull(r, frame[HeaderSize+len(origin):]); err != nil {
			return
		}
		now := time.Now().UnixNano()
		p.m.BytesReceived.Add(float64(len(frame)))
		p.mu.Lock()
		if !p.seen.Mark(origin, h.Seq) { // another connection was faster
			p.mu.Unlock()
			p.m.Duplicate.Inc()
			continue
		}
		p.m.Received.Inc()
		p.m.Latency.Observe(float64(max(0, now-int64(h.SentAtNS))) / 1e9)
		p.history.Add(frame)
		for other := range p.conns {
			if other != c && other.send(frame, p.maxPending()) {
				p.m.BytesSent.Add(float64(len(frame)))
			}
		}
		p.mu.Unlock()
	}
}

// dial keeps one outbound connection to ep open, reconnecting a second after a failure.
func (p *Peer) dial(ctx context.Context, ep discovery.Endpoint) {
	defer p.wg.Done()
	addr := net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port))
	d := net.Dialer{Timeout: 5 * time.Second}
	for ctx.Err() == nil {
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			Logf("connected to %s (%s)", ep.Label(), addr)
			stop := context.AfterFunc(ctx, func() { nc.Close() })
			p.serve(nc, true)
			stop()
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// neighbours returns the peers to dial and how many others the experiment has.
func (p *Peer) neighbours(ctx context.Context, beat func()) ([]discovery.Endpoint, int) {
	cfg := p.cfg
	lookup := p.resolve
	if lookup == nil { // the system's resolver, given up on when the peer stops
		lookup = func(host string) []string { return discovery.ResolveIPv4Context(ctx, host) }
	}
	candidates := cfg.Targets
	if len(candidates) == 0 {
		resolve := func(host string) []string { beat(); return lookup(host) }
		candidates = discovery.Discover(discovery.Query{
			Experiment: cfg.Experiment, Service: cfg.Service, SelfName: cfg.Name,
			StatefulSet: cfg.StatefulSet, Peers: cfg.Peers, Port: cfg.Port,
		}, resolve)
	}
	byKey := map[string]discovery.Endpoint{}
	named := false
	for _, ep := range candidates {
		byKey[ep.Label()] = ep
		named = named || ep.Name != ""
	}
	selfKey := cfg.Name
	if len(candidates) > 0 && !named { // IP-only discovery: we are our own pod IP
		if host, err := os.Hostname(); err == nil {
			if ips := lookup(host); len(ips) > 0 {
				selfKey = ips[0]
			}
		}
	}
	delete(byKey, selfKey)
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	others := len(keys)
	if cfg.Peers > 0 && len(cfg.Targets) == 0 {
		others = max(others, cfg.Peers-1)
	}
	out := []discovery.Endpoint{}
	for _, k := range discovery.RingNeighbours(selfKey, keys, cfg.ConnectTo) {
		out = append(out, byKey[k])
	}
	return out, others
}

// discoveryLoop looks for the peers to dial every --rediscover seconds; while it has found fewer
// than it should dial (the other pods of a StatefulSet that starts them together appear in DNS
// one by one, a second or so apart), it looks again after 1 s, 2 s, 4 s... up to that period,
// so that a peer joins as soon as its neighbours exist rather than a whole period later.
func (p *Peer) discoveryLoop(ctx context.Context) {
	defer p.wg.Done()
	beat := p.health.Loop("discovery")
	period := time.Duration(p.cfg.RediscoverS * float64(time.Second))
	soon := time.Second
	for {
		beat()
		eps, others := p.neighbours(ctx, beat)
		p.health.SetOthers(others)
		for _, ep := range eps {
			key := net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port))
			if !p.outbound[key] {
				p.outbound[key] = true
				p.wg.Add(1)
				go p.dial(ctx, ep)
			}
		}
		wait := period
		if short := len(eps) < min(max(p.cfg.ConnectTo, 0), others); !short {
			soon = time.Second // all found: after a later loss, look soon again
		} else if soon < period {
			wait, soon = soon, soon*2
		}
		if !sleep(ctx, wait, beat) {
			return
		}
	}
}

// sleep waits d in slices of at most a second, beating between them; false when ctx ended.
func sleep(ctx context.Context, d time.Duration, beat func()) bool {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return true
		}
		t := time.NewTimer(min(left, time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
			beat()
		}
	}
}

func (p *Peer) publishLoop(ctx context.Context) {
	defer p.wg.Done()
	beat := p.health.Loop("publish")
	defer p.health.Done("publish")
	payload := make([]byte, p.cfg.MsgSize)
	_, _ = rand.Read(payload)
	period := time.Duration(p.cfg.MsgRateMS * float64(time.Millisecond))
	next := time.Now()
	for p.cfg.Count == 0 || p.published < p.cfg.Count {
		next = next.Add(period)
		if delay := time.Until(next); delay > 0 {
			if !sleep(ctx, delay, beat) {
				return
			}
		} else if delay < -period { // fell behind (a slow link): do not burst to catch up
			next = time.Now()
		}
		if ctx.Err() != nil {
			return
		}
		beat()
		p.mu.Lock()
		if len(p.conns) == 0 {
			p.mu.Unlock()
			continue
		}
		p.published++
		seq := p.published
		now := time.Now().UnixNano()
		frame := Encode(p.origin, uint64(seq), uint64(now), payload)
		p.seen.Mark(p.origin, uint64(seq))
		p.history.Add(frame)
		targets := make([]*conn, 0, len(p.conns))
		for c := range p.conns {
			targets = append(targets, c)
		}
		p.mu.Unlock()
		fmt.Fprintf(p.out, "sending at %s seq=%d size=%d\n", RFC3339Micro(now), seq, p.cfg.MsgSize)
		p.m.Sent.Inc()
		for _, c := range targets {
			if c.send(frame, p.maxPending()) {
				p.m.BytesSent.Add(float64(len(frame)))
			}
		}
		for _, c := range targets { // backpressure: a slow link slows publishing
			for {
				pending, closed := c.queued()
				if closed || pending <= p.lim.HighWater {
					break
				}
				select {
				case <-ctx.Done():
					return
				case <-c.drained:
				case <-time.After(time.Second):
					beat()
				}
			}
		}
	}
}

// Run listens, dials and publishes until ctx ends (or Duration passes), then closes everything.
func (p *Peer) Run(ctx context.Context, ln net.Listener) error {
	if p.cfg.DurationS > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(p.cfg.DurationS*float64(time.Second)))
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	Logf("peer %s listening on %s", p.cfg.Name, ln.Addr())
	if len(p.cfg.Params) > 0 {
		Logf("experiment parameters: %v", p.cfg.Params)
	}
	p.health.SetListening(true)
	p.wg.Add(2)
	go p.discoveryLoop(ctx)
	go p.publishLoop(ctx)
	accepted := make(chan error, 1)
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				accepted <- err
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				stop := context.AfterFunc(ctx, func() { nc.Close() })
				p.serve(nc, false)
				stop()
			}()
		}
	}()
	var err error
	select {
	case <-ctx.Done():
	case err = <-accepted:
		p.health.Dead("accept")
		err = fmt.Errorf("accepting gossip connections: %w", err)
	}
	stopped := ctx.Err() != nil
	cancel()
	p.health.SetListening(false)
	ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.close()
	}
	p.mu.Unlock()
	if stopped {
		err = nil
	}
	p.wg.Wait()
	return err
}
