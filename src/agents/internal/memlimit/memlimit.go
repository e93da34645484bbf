// Package memlimit reads the container's memory limit from its cgroup and sets Go's soft memory
// limit below it, so the garbage collector works harder before the kernel's OOM killer would.
package memlimit

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Unlimited means no cgroup limit was found.
const Unlimited = int64(0)

// Paths of the limit inside a container: cgroup v2 first, then v1.
var Paths = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// Read returns the first limit found in paths, in bytes, or Unlimited ("max", a v1 limit of about
// 2^63, or no file).
func Read(paths []string) int64 {
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		text := strings.TrimSpace(string(raw))
		if text == "max" {
			return Unlimited
		}
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil || n <= 0 || n >= 1<<62 { // v1 says "no limit" as 9223372036854771712
			return Unlimited
		}
		return n
	}
	return Unlimited
}

// Apply sets the soft limit to fraction of limit, unless GOMEMLIMIT is set (the user's choice
// wins) or there is no limit; it returns the soft limit in force (math.MaxInt64 = none).
func Apply(limit int64, fraction float64) int64 {
	if os.Getenv("GOMEMLIMIT") != "" || limit == Unlimited {
		return debug.SetMemoryLimit(-1)
	}
	soft := int64(float64(limit) * fraction)
	debug.SetMemoryLimit(soft)
	return soft
}
