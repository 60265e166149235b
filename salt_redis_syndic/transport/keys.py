"""Redis key names, in one place so that ACL rules and docs can be derived from them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    namespace: str

    @property
    def jobs(self) -> str:
        """Job stream, written by MoMs, read by every DC."""
        return f"{self.namespace}:jobs"

    def uplink(self, mom: str) -> str:
        """List of DC batches bound for one MoM."""
        return f"{self.namespace}:up:{mom}"

    def inflight(self, mom: str) -> str:
        """Batches the MoM has taken but not yet fully stored (reliable-queue pattern)."""
        return f"{self.namespace}:up:{mom}:inflight"

    def confirm(self, mom: str, dc: str) -> str:
        """Signed record of the uplink batches ``mom`` has from ``dc`` (see confirm.py)."""
        return f"{self.namespace}:confirm:{mom}:{dc}"

    def status(self, dc: str) -> str:
        return f"{self.namespace}:status:{dc}"

    def dckey(self, dc: str) -> str:
        """Public uplink key a DC announces (the MoM trusts it only once accepted)."""
        return f"{self.namespace}:dckey:{dc}"

    @property
    def dcs(self) -> str:
        """Set of DC names that ever sent a heartbeat."""
        return f"{self.namespace}:dcs"

    @property
    def deadletter(self) -> str:
        return f"{self.namespace}:deadletter"
