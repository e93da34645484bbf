//go:build tools

// Package tools pins Prometheus for tools/setup.sh, which builds cmd/prometheus for the simulated
// lab (Kubernetes discovery only: the remove_all_sd and enable_kubernetes_sd build tags).
package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
