//go:build tools

// Package tools pins the Prometheus Operator for tools/setup.sh, which builds its operator binary
// (cmd/operator) for the monitoring tests: they run it against the simulated lab's API.
package tools

import _ "github.com/prometheus-operator/prometheus-operator/cmd/operator"
