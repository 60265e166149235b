"""Start ``salt-syndic``, stock or with its upward requests moved onto their own thread.

Why a launcher: the stock salt-syndic of Salt 3008.4 delivered no return to the MoM in a
one-host lab (DESIGN.md section 3).  ``Syndic._send_req_sync`` calls a synchronous
``ReqChannel`` (a ``SyncWrapper`` that runs its own event loop with ``run_until_complete``)
from inside the syndic's running event loop; ``fire_master_syndic_start``, ``_fire_master``
(event forwarding) and ``_return_pub_multi(..., sync=True)`` (returns) all go through it and
hang until their timeouts (cf. saltstack/salt #66142).

``patched`` replaces that one method at runtime: each request runs on one dedicated worker
thread per syndic, which owns its own ``ReqChannel`` (so its own loop).  The syndic's event
loop still blocks while a request is in flight, exactly as the stock code intends, but the
request now completes.  Nothing in site-packages is edited.

    python bench/syndic_launcher.py {stock|patched} -c <conf_dir> [salt-syndic args...]
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

PATCH_DESCRIPTION = (
    "salt.minion.Syndic._send_req_sync runs each upward request on a dedicated thread that owns "
    "its own ReqChannel (own event loop) instead of a SyncWrapper driven from inside the syndic's "
    "running loop"
)


def _send_req_sync(self: Any, load: Any, timeout: float) -> Any:
    """Replacement for ``Syndic._send_req_sync``: same request, on the syndic's worker thread."""
    import salt.channel.client

    worker = self.__dict__.get("_bench_req_worker")
    if worker is None:
        worker = self._bench_req_worker = ThreadPoolExecutor(1, thread_name_prefix="syndic-req")
        self._bench_req_channel = None

    def call() -> Any:
        if self._bench_req_channel is None:
            self._bench_req_channel = salt.channel.client.ReqChannel.factory(self.opts)
        return self._bench_req_channel.send(load, timeout=timeout, tries=self.opts["return_retry_tries"])

    return worker.submit(call).result()


def apply_patch() -> None:
    import salt.minion

    salt.minion.Syndic._send_req_sync = _send_req_sync


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("stock", "patched"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, rest = argv[0], argv[1:]
    if mode == "patched":
        apply_patch()
    import salt.scripts

    sys.argv = ["salt-syndic", *rest]
    return salt.scripts.salt_syndic() or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
