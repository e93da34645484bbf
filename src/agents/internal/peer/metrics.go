package peer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// LatencyBuckets of nuclab_peer_delivery_latency_seconds (seconds), as dashboards expect them.
var LatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Metrics of one peer, in a registry of their own: no Go or process collectors (every series
// costs every experiment's Prometheus), labels experiment and peer on each.
type Metrics struct {
	Registry                  *prometheus.Registry
	Sent, Received, Duplicate prometheus.Counter
	BytesSent, BytesReceived  prometheus.Counter
	Latency                   prometheus.Histogram
	Connections               prometheus.Gauge
	Requests                  prometheus.Counter
}

// NewMetrics registers the peer's series.
func NewMetrics(experiment, name string) *Metrics {
	r := prometheus.NewRegistry()
	labels := prometheus.Labels{"experiment": experiment, "peer": name}
	counter := func(metric, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: metric, Help: help, ConstLabels: labels})
		r.MustRegister(c)
		return c
	}
	m := &Metrics{
		Registry:      r,
		Sent:          counter("nuclab_peer_messages_sent_total", "Messages this peer published."),
		Received:      counter("nuclab_peer_messages_received_total", "Messages of others received first."),
		Duplicate:     counter("nuclab_peer_messages_duplicate_total", "Messages received again (gossip)."),
		BytesSent:     counter("nuclab_peer_bytes_sent_total", "Gossip bytes written (published+relayed)."),
		BytesReceived: counter("nuclab_peer_bytes_received_total", "Gossip bytes read."),
		Requests:      counter("nuclab_peer_http_requests_total", "Requests answered on /echo (a load generator's)."),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "nuclab_peer_delivery_latency_seconds",
			Help:        "Time from a message's publication to its first arrival at this peer.",
			ConstLabels: labels,
			Buckets:     LatencyBuckets,
		}),
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nuclab_peer_connections", Help: "Open gossip connections.", ConstLabels: labels,
		}),
	}
	r.MustRegister(m.Latency, m.Connections)
	return m
}
