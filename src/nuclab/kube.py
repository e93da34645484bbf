"""The lab's API from a kubeconfig, without the kubernetes package.

Importing ``kubernetes`` takes 1 to 8 seconds on a loaded lab machine, longer than a plain
``helm install`` of a small experiment; the CLI needs only a few GETs, a POST, a PATCH and
watches, which ``http.client`` does with the kubeconfig's certificates or token.
Only kubeconfigs that need what the package does (exec plugins, auth providers, token files)
import it, to get their credentials.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from nuclab.errors import NuclabError


class LabError(NuclabError):
    """The lab could not do what was asked (a failed task, pending peers, no API)."""

    exit_code = 1


class ApiError(LabError):
    """An answer of the API other than 2xx."""

    def __init__(self, status: int, reason: str, path: str) -> None:
        self.status = status
        if status == 403:  # the user's to fix (another namespace, another kubeconfig): exit 2
            self.exit_code = 2
            super().__init__(
                f"the lab's API answered 403 Forbidden to {path}: this kubeconfig may not do "
                "that (a research group's acts only in its own namespace)"
            )
            return
        super().__init__(f"the lab's API answered {status} {reason} to {path}")


def _load(kubeconfig: str) -> dict[str, Any]:
    try:
        config = yaml.safe_load(Path(kubeconfig).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())
        raise LabError(f"kubeconfig {kubeconfig} is not readable YAML: {detail}") from exc
    if not isinstance(config, dict):
        raise LabError(f"kubeconfig {kubeconfig} is not a kubeconfig")
    return config


class Kube:
    """A kubeconfig's current context: its server, TLS settings and credentials."""

    def __init__(self, kubeconfig: str, timeout: float = 30.0) -> None:
        config = _load(kubeconfig)

        def named(kind: str, name: str) -> dict[str, Any]:
            entries = [e for e in config.get(f"{kind}s") or [] if e.get("name") == name]
            if not entries:
                raise LabError(f"kubeconfig {kubeconfig}: no {kind} {name!r}")
            return entries[0].get(kind) or {}

        context = named("context", config.get("current-context", ""))
        cluster = named("cluster", context.get("cluster", ""))
        user = named("user", context.get("user", ""))
        self.timeout = timeout
        self.headers = {"Accept": "application/json"}
        if user.get("exec") or user.get("auth-provider") or user.get("tokenFile"):
            self._with_kubernetes_package(kubeconfig)
            return
        self.server = str(cluster.get("server", "")).rstrip("/")
        self.tls = ssl.create_default_context(
            cafile=cluster.get("certificate-authority"),
            cadata=(
                base64.b64decode(cluster["certificate-authority-data"]).decode()
                if cluster.get("certificate-authority-data")
                else None
            ),
        )
        if cluster.get("insecure-skip-tls-verify"):
            self.tls.check_hostname = False
            self.tls.verify_mode = ssl.CERT_NONE
        if user.get("token"):
            self.headers["Authorization"] = f"Bearer {user['token']}"
        with tempfile.TemporaryDirectory(prefix="nuclab-kube-") as private:
            cert, key = user.get("client-certificate"), user.get("client-key")
            for field, suffix in (("client-certificate-data", "crt"), ("client-key-data", "key")):
                if user.get(field):
                    target = Path(private) / f"client.{suffix}"
                    target.write_bytes(base64.b64decode(user[field]))
                    target.chmod(0o600)
                    cert, key = (str(target), key) if suffix == "crt" else (cert, str(target))
            if cert:
                self.tls.load_cert_chain(cert, key)  # read now: the files may go

    def _with_kubernetes_package(self, kubeconfig: str) -> None:
        """Credentials that need the kubernetes package (an exec plugin runs once, here)."""
        from kubernetes import client, config

        settings = client.Configuration()
        try:
            config.load_kube_config(config_file=kubeconfig, client_configuration=settings)
        except (config.ConfigException, OSError) as exc:
            raise LabError(f"no usable kubeconfig {kubeconfig}: {exc}") from exc
        self.server = settings.host.rstrip("/")
        self.tls = ssl.create_default_context(cafile=settings.ssl_ca_cert)
        if not settings.verify_ssl:
            self.tls.check_hostname = False
            self.tls.verify_mode = ssl.CERT_NONE
        if settings.cert_file:
            self.tls.load_cert_chain(settings.cert_file, settings.key_file)
        token = settings.api_key.get("authorization") or settings.api_key.get("BearerToken")
        if token:
            self.headers["Authorization"] = token if " " in token else f"Bearer {token}"

    def _open(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "",
        timeout: float,
        accept: str = "",
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        parsed = urllib.parse.urlsplit(self.server)
        conn: http.client.HTTPConnection
        if parsed.scheme == "https":
            conn = http.client.HTTPSConnection(
                parsed.hostname or "", parsed.port or 443, context=self.tls, timeout=timeout
            )
        else:
            conn = http.client.HTTPConnection(
                parsed.hostname or "", parsed.port or 80, timeout=timeout
            )
        headers = dict(self.headers)
        if accept:
            headers["Accept"] = accept
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type or "application/json"
        try:
            conn.request(method, parsed.path + path, body=data, headers=headers)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise LabError(f"cannot reach the lab's API at {self.server}: {exc}") from exc

    def _call(
        self, method: str, path: str, body: Any = None, *, content_type: str = "", accept: str = ""
    ) -> bytes:
        """One call; the answer's body. ``ApiError`` for anything but 2xx."""
        conn, response = self._open(
            method, path, body, content_type=content_type, timeout=self.timeout, accept=accept
        )
        try:
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise LabError(f"cannot read the lab's answer to {path}: {exc}") from exc
        finally:
            conn.close()
        if not 200 <= response.status < 300:
            raise ApiError(response.status, response.reason, path)
        return payload

    def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = ""
    ) -> dict[str, Any]:
        """One call; the answer's JSON. ``ApiError`` for anything but 2xx."""
        payload = self._call(method, path, body, content_type=content_type)
        return json.loads(payload) if payload else {}

    def get(self, path: str) -> dict[str, Any]:
        return self.request("GET", path)

    def get_text(self, path: str, accept: str = "text/plain") -> str:
        """A GET whose answer is text (a pod's /metrics through the API server's proxy)."""
        return self._call("GET", path, accept=accept).decode("utf-8", errors="replace")

    def watch(
        self, path: str, resource_version: str, seconds: int = 60
    ) -> Iterator[dict[str, Any]]:
        """Events of a list ``path`` after ``resource_version`` until the server ends the watch
        (after about ``seconds``) or sends an ERROR event (yielded, then the watch ends)."""
        sep = "&" if "?" in path else "?"
        query = urllib.parse.urlencode(
            {"watch": "1", "resourceVersion": resource_version, "timeoutSeconds": seconds}
        )
        conn, response = self._open("GET", f"{path}{sep}{query}", timeout=seconds + 30)
        try:
            if response.status != 200:
                raise ApiError(response.status, response.reason, path)
            while True:
                try:
                    line = response.readline()
                except (OSError, http.client.HTTPException) as exc:
                    raise LabError(f"the watch of {path} broke: {exc}") from exc
                if not line:
                    return
                event = json.loads(line)
                yield event
                if event.get("type") == "ERROR":
                    return
        finally:
            conn.close()


def selector(labels: Mapping[str, str] | str) -> str:
    """A label or field selector as a query value."""
    if isinstance(labels, str):
        return urllib.parse.quote(labels, safe="")
    text = ",".join(f"{key}={value}" for key, value in labels.items())
    return urllib.parse.quote(text, safe="")
