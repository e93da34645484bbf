package memlimit

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func write(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "limit")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRead(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none")
	cases := []struct {
		paths []string
		want  int64
	}{
		{[]string{write(t, "16777216\n")}, 16 << 20},        // v1 or v2 with a limit
		{[]string{write(t, "9223372036854771712\n")}, 0},    // v1 without a limit
		{[]string{write(t, "max\n")}, 0},                    // v2 without a limit
		{[]string{missing, write(t, "33554432")}, 32 << 20}, // the first file that exists
		{[]string{missing}, 0},
	}
	for i, c := range cases {
		if got := Read(c.paths); got != c.want {
			t.Errorf("case %d: Read = %d, want %d", i, got, c.want)
		}
	}
}

func TestApplySetsTheSoftLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	t.Setenv("GOMEMLIMIT", "")
	if got := Apply(16<<20, 0.75); got != 12<<20 || debug.SetMemoryLimit(-1) != 12<<20 {
		t.Errorf("Apply(16 MiB) = %d", got)
	}
}
