package peer

import (
	"bytes"
	"testing"
)

func TestSeenDeduplicatesAndForgetsTheOldestFirst(t *testing.T) {
	s := NewSeen(3)
	a, b := []byte("a"), []byte("b")
	if !s.Mark(a, 1) || s.Mark(a, 1) {
		t.Fatal("a new id is new once")
	}
	if !s.Mark(b, 1) {
		t.Fatal("the same sequence from another origin is another message")
	}
	s.Mark(a, 2)
	s.Mark(a, 3) // capacity 3: (a, 1) is forgotten
	if s.Has(a, 1) || !s.Has(b, 1) || !s.Has(a, 3) || s.Len() != 3 {
		t.Errorf("has a1=%v b1=%v a3=%v len=%d", s.Has(a, 1), s.Has(b, 1), s.Has(a, 3), s.Len())
	}
	if !s.Mark(a, 1) {
		t.Error("a forgotten id is new again")
	}
}

func TestHistoryIsBoundedInFramesAndBytes(t *testing.T) {
	h := NewHistory(3, 10)
	for i := byte(1); i <= 4; i++ {
		h.Add([]byte{i, i})
	}
	if got := h.Frames(); len(got) != 3 || got[0][0] != 2 || got[2][0] != 4 {
		t.Errorf("at most 3 frames, oldest dropped: %v", got)
	}
	h.Add(bytes.Repeat([]byte{9}, 7)) // the 4th frame pushes out one, then 2+2+7 > 10 another
	if got := h.Frames(); len(got) != 2 || got[0][0] != 4 || got[1][0] != 9 || h.Bytes() != 9 {
		t.Errorf("bounded in bytes: %v (%d bytes)", got, h.Bytes())
	}
	h.Add(bytes.Repeat([]byte{8}, 11)) // bigger than the whole budget: not kept
	if h.Len() != 0 || h.Bytes() != 0 {
		t.Errorf("a frame over the budget is kept: %d frames, %d bytes", h.Len(), h.Bytes())
	}
}

func TestLimitsFollowTheMemoryLimit(t *testing.T) {
	l := LimitsFor(16 << 20)
	if l.HistoryBytes != 1<<20 || l.SeenIDs != 32768 {
		t.Errorf("16 MiB: %+v", l)
	}
	if l := LimitsFor(0); l.HistoryBytes != 32<<20 || l.SeenIDs != 200_000 {
		t.Errorf("no limit: the Python peer's bounds, %+v", l)
	}
	if l := LimitsFor(1 << 20); l.HistoryBytes != 256<<10 || l.SeenIDs != 16384 {
		t.Errorf("tiny limit: floors, %+v", l)
	}
}
