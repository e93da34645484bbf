package peer

import (
	"bytes"
	"encoding/hex"
	"regexp"
	"testing"
)

// The bytes Python's struct.pack("!4sIQQH", b"NLG1", 5, 7, 123, 2) + b"p1" + b"hello" gives.
const pythonFrame = "4e4c4731" + "00000005" + "0000000000000007" + "000000000000007b" + "0002" +
	"7031" + "68656c6c6f"

func TestFrameMatchesThePythonWireFormat(t *testing.T) {
	frame := Encode([]byte("p1"), 7, 123, []byte("hello"))
	if got := hex.EncodeToString(frame); got != pythonFrame {
		t.Fatalf("frame %s, want %s", got, pythonFrame)
	}
	h, ok := DecodeHeader(frame)
	if !ok || h != (Header{Size: 5, Seq: 7, SentAtNS: 123, OriginLn: 2}) {
		t.Errorf("decoded %+v %v", h, ok)
	}
	if !bytes.Equal(frame[HeaderSize:], []byte("p1hello")) {
		t.Errorf("body %q", frame[HeaderSize:])
	}
}

func TestHeadersThatAreNotGossipAreRefused(t *testing.T) {
	bad := Encode([]byte("p1"), 1, 1, nil)
	copy(bad, "GET ")
	if _, ok := DecodeHeader(bad); ok {
		t.Error("a wrong magic is accepted")
	}
	big := Encode([]byte("p1"), 1, 1, nil)
	big[4] = 0x02 // 32 MiB payload: more than MaxPayload
	if _, ok := DecodeHeader(big); ok {
		t.Error("a payload over 16 MiB is accepted")
	}
	if _, ok := DecodeHeader([]byte("NLG1")); ok {
		t.Error("a short header is accepted")
	}
}

func TestLogTimeIsRFC3339UTCWithMicroseconds(t *testing.T) {
	if got := RFC3339Micro(1_758_369_429_123_456_789); got != "2025-09-20T11:57:09.123456Z" {
		t.Errorf("got %s", got)
	}
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`).MatchString(RFC3339Micro(0)) {
		t.Errorf("epoch: %s", RFC3339Micro(0))
	}
}
