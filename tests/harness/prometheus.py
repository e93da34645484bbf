"""The real Prometheus and Pushgateway (Debian packages) on loopback, for the tests and the
benchmarks: started, queried, stopped; ``local_prometheus`` serves known samples, backfilled
with ``promtool tsdb create-blocks-from openmetrics`` into a server that scrapes nothing."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from nuclab.errors import NuclabError
from nuclab.net import free_port


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise NuclabError(f"{name} is not installed: it comes from the Debian package (make setup)")
    return path


class Server:
    """A child process listening on 127.0.0.1:<port>; ``stop`` ends it. With ``tls``, readiness
    is asked over HTTPS without checking the certificate (one the server has just made itself
    on loopback), with ``headers`` (a bearer token)."""

    def __init__(
        self,
        args: list[str],
        port: int,
        ready_path: str,
        log: Path,
        ready_timeout: float = 30,
        *,
        env: dict[str, str] | None = None,
        tls: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        self._context = ssl._create_unverified_context() if tls else None
        self._headers = headers or {}
        self._log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self._wait(ready_path, ready_timeout)

    def _wait(self, path: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NuclabError(
                    f"{self.proc.args[0]} exited with {self.proc.returncode}: "
                    f"{self._log_path.read_text(errors='replace')[-3000:]}"
                )
            try:
                request = urllib.request.Request(self.url + path, headers=self._headers)
                with urllib.request.urlopen(request, timeout=2, context=self._context) as resp:
                    if resp.status == 200:
                        return
            except OSError:  # not listening yet (URLError, a refused connection or handshake)
                pass
            time.sleep(0.2)
        raise NuclabError(f"{self.proc.args[0]} was not ready at {self.url}{path} after {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class PrometheusClient:
    """Prometheus' HTTP API at ``url`` (a server of the test's, or the simulated lab's own)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; raises ``PromQLError`` on an error answer (e.g. a parse error)."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise PromQLError(params.get("query", path), str(body.get("error")))
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def targets_up(self) -> tuple[int, int]:
        active = self.api("targets")["activeTargets"]
        return sum(t["health"] == "up" for t in active), len(active)


class Prometheus(Server, PrometheusClient):
    def __init__(
        self,
        workdir: Path,
        config: dict[str, Any],
        extra_args: list[str] | None = None,
        *,
        self_scrape: bool = True,
        ready_timeout: float = 30,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        if self_scrape:
            job = {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            config = {**config, "scrape_configs": [*config.get("scrape_configs", []), job]}
        self.config_file = workdir / "prometheus.yml"
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self.data = workdir / "data"
        args = [
            binary("prometheus"),
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.data}",
            f"--web.listen-address=127.0.0.1:{port}",
            *(extra_args or []),
        ]
        super().__init__(args, port, "/-/ready", workdir / "prometheus.log", ready_timeout)


class Pushgateway(Server):
    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        args = [binary("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}"]
        super().__init__(args, port, "/-/ready", workdir / "pushgateway.log")
        self.address = f"127.0.0.1:{port}"


class PromQLError(NuclabError):
    def __init__(self, expr: str, error: str) -> None:
        super().__init__(f"PromQL {expr!r}: {error}")
        self.expr = expr
        self.error = error


Series = dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[int, float]]]


def openmetrics(data: Series) -> str:
    lines = []
    for name in sorted({k[0] for k in data}):
        lines.append(f"# TYPE {name} gauge")
        for (metric, labels), points in sorted(data.items()):
            if metric != name:
                continue
            lab = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.extend(f"{name}{{{lab}}} {v!r} {t}" for t, v in points)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@contextmanager
def local_prometheus(work: Path, data: Series, retention: str = "30d") -> Iterator[str]:
    """Prometheus serving ``data`` from ``work``, less what ``retention`` (relative to the newest
    block) deletes when it opens the TSDB; yields its base URL, stops it after."""
    (work / "data.om").write_text(openmetrics(data))
    subprocess.run(
        [binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(work / "data.om"),
         str(work / "data")],
        check=True, capture_output=True,
    )  # fmt: skip
    server = Prometheus(
        work,
        {"global": {"scrape_interval": "1h"}, "scrape_configs": []},
        [f"--storage.tsdb.retention.time={retention}"],
        self_scrape=False,
        ready_timeout=60,
    )
    try:
        yield server.url
    finally:
        server.stop()
