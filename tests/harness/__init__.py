"""Real servers the tests and benchmarks run on loopback (Prometheus, Pushgateway, a Kafka broker)
and the stand-in exporters of a simulated cluster: test equipment, not part of nuclab."""
