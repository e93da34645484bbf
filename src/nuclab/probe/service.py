"""``nuclab probe`` as a long-running service: metrics endpoint, discovery, node pushes."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path

from prometheus_client import disable_created_metrics, start_http_server

from nuclab.probe import nodes
from nuclab.probe.config import ProbeConfig
from nuclab.probe.loop import Prober
from nuclab.probe.metrics import probe_metrics
from nuclab.probe.targets import discover

log = logging.getLogger("nuclab.probe")


def _discover(cfg: ProbeConfig) -> list:
    return discover(
        experiment=cfg.experiment,
        service=cfg.service,
        peers=cfg.peers,
        self_name=cfg.name,
        port=cfg.port,
        statefulset=cfg.statefulset,
        max_targets=cfg.max_targets,
    )


def _every(stop: threading.Event, seconds: float, action) -> threading.Thread:
    def loop() -> None:
        while not stop.wait(seconds):
            try:
                action()
            except Exception as exc:  # a failed push or lookup must not stop the probe
                log.warning("%s", exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def run(cfg: ProbeConfig, stop: threading.Event | None = None) -> int:
    stop = stop or threading.Event()
    disable_created_metrics()
    metrics = probe_metrics()
    window = nodes.LatencyWindow(cfg.window) if cfg.node else None
    prober = Prober(cfg, metrics, on_rtt=window.add if window else None)
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port, addr=cfg.bind, registry=metrics.registry)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())

    if cfg.answer_only:
        pass
    elif cfg.targets:
        prober.set_targets(cfg.targets)
    else:
        prober.set_targets(_discover(cfg))
        _every(stop, cfg.rediscover, lambda: prober.set_targets(_discover(cfg)))

    def publish() -> None:
        assert window is not None
        table = window.percentiles()
        if cfg.csv:
            nodes.write_csv(Path(cfg.csv), nodes.csv_rows(cfg.name, table))
        if cfg.pushgateway and table:
            nodes.push(cfg.pushgateway, cfg.name, table)

    if window is not None:
        _every(stop, cfg.push_interval, publish)
    log.info("probing as %s on port %d", cfg.name, cfg.port)
    try:
        prober.run(stop)
    finally:
        stop.set()
        prober.close()
    if window is not None:
        publish()  # the final numbers, also when --duration ends the run
    for row in prober.summary():  # one JSON line per target, like ping's closing statistics
        print(json.dumps(row, sort_keys=True), flush=True)
    return 0
