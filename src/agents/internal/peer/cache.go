package peer

// Seen remembers the latest capacity message ids (origin, sequence) and forgets the oldest first.
// Origins are interned to small numbers, so an id costs one uint64 in a map and one in a ring:
// about 24 bytes, where a set of (string, int) pairs would cost several times that.
type Seen struct {
	origins map[string]uint64
	set     map[uint64]struct{}
	ring    []uint64
	next    int
	full    bool
}

// seqBits: sequence numbers up to 2^40 (10^12 messages, the --count maximum) beside the origin.
const seqBits = 40

// NewSeen keeps at most capacity ids.
func NewSeen(capacity int) *Seen {
	if capacity < 1 {
		capacity = 1
	}
	return &Seen{origins: map[string]uint64{}, set: map[uint64]struct{}{}, ring: make([]uint64, capacity)}
}

func (s *Seen) key(origin []byte, seq uint64) uint64 {
	id, ok := s.origins[string(origin)]
	if !ok {
		id = uint64(len(s.origins))
		s.origins[string(origin)] = id
	}
	return id<<seqBits | seq&(1<<seqBits-1)
}

// Has says whether the id was marked (and not yet forgotten).
func (s *Seen) Has(origin []byte, seq uint64) bool {
	_, ok := s.set[s.key(origin, seq)]
	return ok
}

// Mark records the id; it returns true when the id is new.
func (s *Seen) Mark(origin []byte, seq uint64) bool {
	k := s.key(origin, seq)
	if _, ok := s.set[k]; ok {
		return false
	}
	if s.full {
		delete(s.set, s.ring[s.next])
	}
	s.set[k] = struct{}{}
	s.ring[s.next] = k
	s.next++
	if s.next == len(s.ring) {
		s.next, s.full = 0, true
	}
	return true
}

// Len is the number of ids remembered.
func (s *Seen) Len() int { return len(s.set) }

// History holds the latest frames, at most maxFrames and maxBytes of them, to replay to every
// new connection (like GossipSub's message cache): a peer that connects late or reconnects
// still gets what was published meanwhile.
type History struct {
	frames             [][]byte
	head               int // index of the oldest frame in frames (a ring)
	count, bytes       int
	maxFrames, maxByte int
}

// NewHistory keeps at most maxFrames frames and maxBytes bytes.
func NewHistory(maxFrames, maxBytes int) *History {
	return &History{frames: make([][]byte, maxFrames), maxFrames: maxFrames, maxByte: maxBytes}
}

// Add appends a frame and drops the oldest ones over the bounds (a frame bigger than maxBytes
// is not kept at all).
func (h *History) Add(frame []byte) {
	if h.maxFrames == 0 {
		return
	}
	if h.count == h.maxFrames {
		h.drop()
	}
	h.frames[(h.head+h.count)%h.maxFrames] = frame
	h.count++
	h.bytes += len(frame)
	for h.count > 0 && h.bytes > h.maxByte {
		h.drop()
	}
}

func (h *History) drop() {
	h.bytes -= len(h.frames[h.head])
	h.frames[h.head] = nil
	h.head = (h.head + 1) % h.maxFrames
	h.count--
}

// Frames returns the frames, oldest first (shared, never modified).
func (h *History) Frames() [][]byte {
	out := make([][]byte, h.count)
	for i := range out {
		out[i] = h.frames[(h.head+i)%h.maxFrames]
	}
	return out
}

// Len and Bytes are the frames and bytes held.
func (h *History) Len() int   { return h.count }
func (h *History) Bytes() int { return h.bytes }
