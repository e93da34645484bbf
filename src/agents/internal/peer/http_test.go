package peer

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestEchoAnswersWithTheBodyAndCountsEachRequest(t *testing.T) {
	m := NewMetrics("purple", "p-0")
	srv := httptest.NewServer(Handler(m, NewHealth()))
	defer srv.Close()

	resp, err := http.Post(srv.URL+"/echo", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(got) != "hello" {
		t.Fatalf("POST /echo: %d %q", resp.StatusCode, got)
	}
	resp, err = http.Get(srv.URL + "/echo")
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(got) != 0 {
		t.Fatalf("GET /echo: %d %q", resp.StatusCode, got)
	}
	if n := testutil.ToFloat64(m.Requests); n != 2 {
		t.Fatalf("nuclab_peer_http_requests_total = %v, want 2", n)
	}

	resp, err = http.Post(srv.URL+"/echo", "text/plain", bytes.NewReader(make([]byte, EchoLimit+1)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("an oversized body: %d, want 413", resp.StatusCode)
	}
	if n := testutil.ToFloat64(m.Requests); n != 2 {
		t.Fatalf("an oversized body was counted: %v", n)
	}
}
