// Command nuclab-peer is the default workload of a nuclab experiment: see package peer, and
// `nuclab-peer --help` for its settings. Exit codes: 0 stopped (SIGTERM, SIGINT, --duration),
// 1 it could not run (a port in use), 2 bad input (one line naming the flag or variable).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"nuclab.io/agents/internal/memlimit"
	"nuclab.io/agents/internal/peer"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	cfg, err := peer.Parse(args, nil)
	if errors.Is(err, peer.ErrHelp) {
		fmt.Print(peer.Usage)
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nuclab-peer: error: %s\n", err)
		return 2
	}
	limit := memlimit.Read(memlimit.Paths)
	soft := memlimit.Apply(limit, 0.75)
	lim := peer.LimitsFor(limit)
	if limit > 0 {
		peer.Logf("memory limit %d MiB: Go soft limit %d MiB, history %d KiB, %d ids remembered",
			limit>>20, soft>>20, lim.HistoryBytes>>10, lim.SeenIDs)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.Port)))
	if err != nil {
		fmt.Fprintf(os.Stderr, "nuclab-peer: cannot listen for gossip: %s\n", err)
		return 1
	}
	m := peer.NewMetrics(cfg.Experiment, cfg.Name)
	p := peer.New(cfg, m, lim, os.Stdout)
	var srv *http.Server
	if cfg.MetricsPort != 0 {
		mln, err := net.Listen("tcp", net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.MetricsPort)))
		if err != nil {
			fmt.Fprintf(os.Stderr, "nuclab-peer: cannot listen for /metrics: %s\n", err)
			return 1
		}
		srv = peer.Server(mln.Addr().String(), peer.Handler(m, p.Health()))
		go func() { _ = srv.Serve(mln) }()
	}
	err = p.Run(ctx, ln)
	if srv != nil {
		_ = srv.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nuclab-peer: %s\n", err)
		return 1
	}
	peer.Logf("peer %s stopped", cfg.Name)
	return 0
}
