"""salt-api (``rest_cherrypy``) on a lab's top master, and a small HTTP client for it (urllib only).

``Lab(api=True)`` configures ``rest_cherrypy`` on the MoM (or the single master) at
``http://<its 127.0.B.x address>:8000`` without TLS, with the ``sharedsecret`` eauth for the
user ``lab`` (every permission: ``.*``, ``@runner``, ``@wheel``, ``@jobs``), starts ``salt-api``
after the master and stops it with the lab. Only the labs that ask for it pay for it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

API_PORT = 8000
API_USER = "lab"
API_SECRET = "lab-shared-secret"  # noqa: S105 - a throwaway lab's loopback-only API
API_CLIENTS = ["local", "local_async", "local_batch", "local_subset", "runner", "runner_async", "wheel"]


def api_opts(address: str, root: Path) -> dict[str, Any]:
    """What a master's config needs for ``salt-api -c <its conf dir>`` to serve ``rest_cherrypy``."""
    return {
        "rest_cherrypy": {"host": address, "port": API_PORT, "disable_ssl": True},
        "external_auth": {"sharedsecret": {API_USER: [".*", "@runner", "@wheel", "@jobs"]}},
        "sharedsecret": API_SECRET,
        "netapi_enable_clients": API_CLIENTS,
        "api_pidfile": str(root / "run" / "salt-api.pid"),
        "api_logfile": str(root / "log" / "api.log"),
    }


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status and the decoded JSON body (or the text when it is not JSON)."""

    status: int
    body: Any


class SaltApi:
    """``rest_cherrypy`` over HTTP: log in once, then post lowstates and read ``/jobs``."""

    def __init__(self, address: str, port: int = API_PORT, timeout: float = 180) -> None:
        self.url = f"http://{address}:{port}"
        self.timeout = timeout
        self._token: str | None = None

    def _request(self, path: str, body: Any = None, token: str | None = None) -> Reply:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["X-Auth-Token"] = token
        request = urllib.request.Request(self.url + path, data=data, headers=headers)  # noqa: S310 - http on loopback
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:  # noqa: S310
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode(errors="replace")
        try:
            return Reply(status, json.loads(text))
        except ValueError:
            return Reply(status, text)

    def token(self) -> str:
        if self._token is None:
            reply = self._request("/login", {"username": API_USER, "password": API_SECRET, "eauth": "sharedsecret"})
            if reply.status != 200:
                raise RuntimeError(f"salt-api login at {self.url} failed: {reply}")
            self._token = reply.body["return"][0]["token"]
        return self._token

    def run(self, *lowstates: dict[str, Any]) -> Reply:
        """POST the lowstates to ``/`` with the session token."""
        return self._request("/", list(lowstates), token=self.token())

    def job(self, jid: str) -> Reply:
        """GET ``/jobs/<jid>``: the job's info (``jobs.list_job``) and its returns by minion."""
        return self._request(f"/jobs/{jid}", token=self.token())
