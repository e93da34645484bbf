package peer

import (
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// EchoLimit bounds the body /echo reads and answers with.
const EchoLimit = 64 << 10

// Handler serves /metrics (and any other path, as the Python peer did), /healthz, /readyz and
// /echo: the HTTP load generator's default target (`nuclab loadgen http`), which answers a
// request with its body (up to EchoLimit; 413 beyond) and counts it.
// Compression is off: a gzip writer costs more memory than the few KiB of series it would save.
func Handler(m *Metrics, h *Health) http.Handler {
	mux := http.NewServeMux()
	metrics := promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{DisableCompression: true})
	mux.Handle("/", metrics)
	check := func(probe func() error) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if err := probe(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(err.Error() + "\n"))
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		}
	}
	mux.Handle("/healthz", check(h.Live))
	mux.Handle("/readyz", check(h.Ready))
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, EchoLimit+1))
		if err != nil || len(body) > EchoLimit {
			http.Error(w, "request body over 64 KiB or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		m.Requests.Inc()
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(body)
	})
	return mux
}

// Server is the metrics server with timeouts (a stuck scraper cannot pin memory).
func Server(addr string, handler http.Handler) *http.Server {
	return &http.Server{
		Addr: addr, Handler: handler, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second,
		MaxHeaderBytes: 8 << 10,
	}
}
