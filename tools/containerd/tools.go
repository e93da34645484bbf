//go:build tools

// Package tools pins the containerd commands the simulated lab's real nodes run. containerd's
// own go.mod has exclude directives, so `go install module@version` refuses it: it is built
// from this module instead.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
