"""Payload encryption end to end: a secret in a job and in its returns never crosses Redis in clear.

Real daemons and a real redis-server; everything Redis receives is captured with MONITOR.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from lab import Lab, parse_json_output
from salt_redis_syndic.security.confidential import generate_key_text

pytestmark = pytest.mark.integration


class Monitor:
    """Every command Redis executes, as text, collected in a thread."""

    def __init__(self, lab: Lab) -> None:
        self.client = lab.redis_client()
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with self.client.monitor() as monitor:
                self._monitor = monitor
                for command in monitor.listen():
                    self.lines.append(str(command.get("command", "")))
        except Exception:
            return  # the connection is closed by stop()

    def __enter__(self) -> "Monitor":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._monitor.connection.disconnect()
        self._thread.join(timeout=5)


def test_secrets_never_cross_redis_in_clear(make_lab) -> None:
    keys = {dc: generate_key_text() for dc in ("east", "west")}
    lab: Lab = make_lab(dcs=("east", "west"), minions_per_dc=1,
                        mom_bridge={"dc_payload_keys": keys}, dc_bridge=lambda dc: {"payload_key": keys[dc]})
    lab.wait_bridge(timeout=90)
    secret = f"s3cret-{uuid.uuid4().hex}"
    with Monitor(lab) as monitor:
        out = lab.salt("*", "test.arg", f"password={secret}", "--out=json", "--static", timeout=90)
        result = parse_json_output(out.stdout, out)
    assert {m: r["kwargs"]["password"] for m, r in result.items()} == {"east-m1": secret, "west-m1": secret}
    seen = "\n".join(monitor.lines)
    assert "LPUSH" in seen.upper() and "XADD" in seen.upper()  # the capture saw the traffic
    assert secret not in seen
    for _, fields in lab.redis_client().xrange("redis_syndic:jobs"):
        assert secret.encode() not in b"".join(fields.values())
