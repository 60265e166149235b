"""Key orders (MoM -> DC): a signed order to accept, reject or delete one minion's key.

The order and its one reader, :func:`decode_command` (MoM key verified before parsing); whether
an order is carried out (this DC, not replayed, not expired) is ``estate/keycmd.py``'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..security.names import NAME_RE
from ..security.signing import Verifier
from .codec import (
    MINION_RE,
    VERSION,
    boundary,
    brief,
    number,
    pack,
    require,
    text,
    versioned,
)
from .sealed import unseal

ACTIONS = ("accept", "reject", "delete")
_ID_RE = re.compile(r"^[0-9a-f]{32}\Z")


@dataclass(frozen=True)
class KeyCommand:
    dc: str
    minion: str
    action: str
    issued_at: float
    expires_at: float
    id: str
    origin: str
    by: str

    def encode(self) -> bytes:
        return pack({"v": VERSION, "kind": "keycmd", **self.__dict__})


@boundary
def decode_command(data: bytes, verifier: Verifier, max_bytes: int) -> tuple[KeyCommand, str]:
    """Verify (MoM key) then decode one stream entry's sealed order; returns it and its key id."""
    body, sig, kid = unseal(data, max_bytes)
    verifier.verify(kid, sig, body)
    doc = versioned(body, max_bytes, "order")
    require(doc.get("kind") == "keycmd", "malformed", "not a key order")
    action = text(doc, "action")
    require(action in ACTIONS, "malformed", f"unknown action {brief(action)}")
    minion = text(doc, "minion", MINION_RE)
    require(not any(c in minion for c in "*?[]"), "malformed", "a key order names one minion, not a glob")
    by = doc.get("by", "")
    require(isinstance(by, str), "malformed", "by")
    return KeyCommand(dc=text(doc, "dc", NAME_RE), minion=minion, action=action, issued_at=number(doc, "issued_at"),
                      expires_at=number(doc, "expires_at"), id=text(doc, "id", _ID_RE),
                      origin=text(doc, "origin", NAME_RE), by=by[:64]), kid
