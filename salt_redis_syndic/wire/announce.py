"""A DC's announced uplink key (``<ns>:dckey:<dc>``): unsigned by nature, so only ever *pending*.

Anyone who can write the key can announce one; it is trusted only after an operator accepts it
(``security.dckeys.DcKeyring``), which also parses the PEM.  Here it is only bounded and made text.
"""

from __future__ import annotations

from typing import Any

MAX_PEM_BYTES = 4096  # an Ed25519 public key in PEM is 113 bytes


def announced_key(raw: Any) -> str | None:
    """The announced PEM text, or None when nothing (or something absurdly large) was announced."""
    if not raw or not isinstance(raw, (bytes, str)) or len(raw) > MAX_PEM_BYTES:
        return None
    return raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
