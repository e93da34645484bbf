"""A small JSON-over-HTTP client with one keep-alive connection per thread (stdlib only)."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import urlencode, urlsplit

from nuclab.errors import NuclabError, ValidationError


class HttpError(NuclabError):
    """A server answered with an error, or could not be reached."""


URL_ALLOWED = "an http:// or https:// URL with a host and, if any, a port from 1 to 65535"


def check_url(field: str, url: object) -> tuple[str, str, int | None, str]:
    """(scheme, host, port or None, path) of an http(s) base URL, or ``ValidationError``."""
    if not isinstance(url, str):
        raise ValidationError(field, url, URL_ALLOWED)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        raise ValidationError(field, url, URL_ALLOWED) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise ValidationError(field, url, URL_ALLOWED)
    return parts.scheme, parts.hostname, port, parts.path


class JsonClient:
    def __init__(self, base_url: str, *, what: str, field: str, timeout: float = 60) -> None:
        scheme, host, port, path = check_url(field, base_url)
        self.base_url = base_url.rstrip("/")
        self.what = what
        self._scheme = scheme
        self._host = host
        self._port = port
        self._prefix = path.rstrip("/")
        self._timeout = timeout
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = (
                http.client.HTTPSConnection
                if self._scheme == "https"
                else http.client.HTTPConnection
            )
            conn = cls(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
        return conn

    def get(self, path: str, params: list[tuple[str, str]] | dict[str, str]) -> Any:
        """GET ``path`` with query ``params`` (POSTed as a form when long) and decode the JSON."""
        data = self.get_bytes(path, params)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise HttpError(f"{self.what} at {self.base_url} did not answer JSON") from exc

    def get_bytes(self, path: str, params: list[tuple[str, str]] | dict[str, str]) -> bytes:
        """The body of GET ``path`` (a POSTed form when the query is long); ``HttpError`` when
        the server cannot be reached or answers an error."""
        body = urlencode(params)
        url = f"{self._prefix}{path}"
        for attempt in (1, 2):  # a kept-alive connection the server closed: reconnect once
            conn = self._conn()
            try:
                if len(body) > 4000:
                    conn.request(
                        "POST", url, body=body,
                        headers={"Content-Type": "application/x-www-form-urlencoded"},
                    )  # fmt: skip
                else:
                    conn.request("GET", f"{url}?{body}" if body else url)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise HttpError(
                        f"{self.what} at {self.base_url} is unreachable: {exc}"
                    ) from exc
        if resp.status >= 400:
            detail = data[:300].decode("utf-8", "replace").strip()
            raise HttpError(f"{self.what} at {self.base_url} answered {resp.status}: {detail}")
        return data
