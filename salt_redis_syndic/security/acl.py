"""Redis ACL rules for the documented layout: a DC's user can read jobs, cannot add them.

Derived from :class:`~salt_redis_syndic.transport.keys.Keys` so the rules follow the key
names.  ``ACL SETUSER <user> <rules...>`` with these rules (plus ``on`` and a password)
gives each master exactly the commands and keys its role uses.
"""

from __future__ import annotations

from ..transport.keys import Keys

# Connection housekeeping redis-py performs (RESP3 HELLO, client name, health-check PING).
_CONNECTION = ["+ping", "+hello", "+auth", "+client|setname", "+client|id", "+select", "+info"]


def mom_rules(namespace: str, mom: str) -> list[str]:
    """The MoM: appends jobs, drains its uplink lists, reads DC status, writes dead letters."""
    keys = Keys(namespace)
    return [
        "resetkeys", "resetchannels", "-@all", *_CONNECTION,
        f"~{keys.jobs}", f"~{keys.uplink(mom)}", f"~{keys.inflight(mom)}", f"~{keys.confirm(mom, '*')}",
        f"%R~{keys.status('*')}", f"%R~{keys.dckey('*')}", f"%R~{keys.dcs}", f"~{keys.deadletter}",
        f"%R~{keys.estate('*')}", f"%R~{keys.roster('*')}", f"%R~{keys.files('*')}", f"%W~{keys.resync('*')}",
        f"%W~{keys.keycmd('*')}",
        "+xadd", "+xtrim", "+xrange", "+xrevrange", "+xinfo|stream", "+blmove", "+lmove", "+lrem", "+lrange",
        "+llen", "+lpush", "+ltrim", "+smembers", "+mget", "+get", "+xread", "+set",
    ]


def dc_rules(namespace: str, dc: str, moms: list[str]) -> list[str]:
    """A DC: reads the job stream, writes only its own status and the uplink of its MoMs."""
    keys = Keys(namespace)
    uplinks = [f"%W~{keys.uplink(mom)}" for mom in moms]
    return [
        "resetkeys", "resetchannels", "-@all", *_CONNECTION,
        f"%R~{keys.jobs}", *uplinks, f"~{keys.status(dc)}", f"%W~{keys.dckey(dc)}", f"%W~{keys.dcs}",
        f"%W~{keys.deadletter}", *[f"%R~{keys.confirm(mom, dc)}" for mom in moms],
        # estate: its own head, roster snapshot and deltas, file listing; the MoM's resync flag
        f"%W~{keys.estate(dc)}", f"%W~{keys.roster(dc)}", f"%W~{keys.roster_deltas(dc)}", f"%W~{keys.files(dc)}",
        f"~{keys.resync(dc)}", f"%R~{keys.keycmd(dc)}",
        "+xread", "+xrange", "+xrevrange", "+lpush", "+ltrim", "+set", "+sadd", "+xadd", "+get", "+del",
    ]


def main(argv: list[str] | None = None) -> int:
    """Print ``ACL SETUSER`` lines (redis.conf ``user`` syntax) for a MoM and its DCs."""
    import argparse

    parser = argparse.ArgumentParser(description="Print Redis ACL users for salt-redis-syndic.")
    parser.add_argument("--namespace", default="redis_syndic")
    parser.add_argument("--mom", action="append", required=True, help="MoM master id (repeatable)")
    parser.add_argument("--dc", action="append", default=[], help="DC name (repeatable)")
    args = parser.parse_args(argv)
    for mom in args.mom:
        print(" ".join(["user", mom, "on", ">CHANGE-ME", *mom_rules(args.namespace, mom)]))
    for dc in args.dc:
        print(" ".join(["user", f"dc-{dc}", "on", ">CHANGE-ME", *dc_rules(args.namespace, dc, args.mom)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
