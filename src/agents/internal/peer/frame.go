package peer

import (
	"encoding/binary"
	"time"
)

// The wire format of nuclab gossip, one frame per message, big-endian (Python's "!4sIQQH"):
// magic "NLG1", payload length (uint32), sequence (uint64), sent-at (ns since the epoch, UTC,
// uint64), origin length (uint16); then the origin (the publishing peer's name) and the payload.
const (
	Magic      = "NLG1"
	HeaderSize = 4 + 4 + 8 + 8 + 2
	MaxPayload = 16 * 1024 * 1024
)

// Header is a frame's fixed part.
type Header struct {
	Size     uint32
	Seq      uint64
	SentAtNS uint64
	OriginLn uint16
}

// Encode returns one frame.
func Encode(origin []byte, seq uint64, sentAtNS uint64, payload []byte) []byte {
	f := make([]byte, HeaderSize+len(origin)+len(payload))
	copy(f, Magic)
	binary.BigEndian.PutUint32(f[4:], uint32(len(payload)))
	binary.BigEndian.PutUint64(f[8:], seq)
	binary.BigEndian.PutUint64(f[16:], sentAtNS)
	binary.BigEndian.PutUint16(f[24:], uint16(len(origin)))
	copy(f[HeaderSize:], origin)
	copy(f[HeaderSize+len(origin):], payload)
	return f
}

// DecodeHeader reads the fixed part; ok is false when the magic is wrong or the payload is too
// big (the other side does not speak nuclab gossip).
func DecodeHeader(b []byte) (h Header, ok bool) {
	if len(b) < HeaderSize || string(b[:4]) != Magic {
		return h, false
	}
	h = Header{
		Size:     binary.BigEndian.Uint32(b[4:]),
		Seq:      binary.BigEndian.Uint64(b[8:]),
		SentAtNS: binary.BigEndian.Uint64(b[16:]),
		OriginLn: binary.BigEndian.Uint16(b[24:]),
	}
	return h, h.Size <= MaxPayload
}

// RFC3339Micro is UTC time with microseconds, e.g. 2025-09-20T11:57:09.123456Z.
func RFC3339Micro(ns int64) string {
	return time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000") + "Z"
}
