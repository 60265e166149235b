"""Salt runner ``redis_syndic`` (on the master of masters).

.. code-block:: bash

    salt-run redis_syndic.status          # one row per DC: alive, last seen, lag, spool, ...
    salt-run redis_syndic.job <jid>       # per DC: acknowledged, targeted, returned, missing
    salt-run redis_syndic.minions [dc=east] [state=pending]   # every minion: DC, key state, last seen
    salt-run redis_syndic.drift           # per DC and saltenv: in sync, or which files differ
    salt-run redis_syndic.key east accept east-web9   # (key_management) accept/reject/delete on a DC
    salt-run redis_syndic.pubkey          # the MoM's job-signing public key, for the DCs
    salt-run redis_syndic.keys            # DC uplink keys: accepted, pending, rejected
    salt-run redis_syndic.accept <dc> <key_id>   # trust the key a DC announced, if its id is key_id
    salt-run redis_syndic.reject <dc>     # refuse it (its batches are dead-lettered)
"""

__virtualname__ = "redis_syndic"

try:
    from salt_redis_syndic import runner as _runner

    _IMPORT_ERROR = None
except ImportError as _err:
    _runner = None
    _IMPORT_ERROR = str(_err)


def __virtual__():
    if _runner is None:
        return False, f"redis_syndic runner: cannot import salt_redis_syndic ({_IMPORT_ERROR})"
    return __virtualname__


def status():
    """Status of every DC known to this Redis namespace."""
    return _runner.status(__opts__)


def job(jid):
    """Completeness of one bridged job, per DC."""
    return _runner.job(__opts__, str(jid))


def minions(dc=None, state=None):
    """Every minion below the MoM, by id: its DC, key state and last seen (filter by dc, state)."""
    return _runner.minions(__opts__, None if dc is None else str(dc), None if state is None else str(state))


def drift():
    """Per DC, file_roots/pillar_roots and saltenv: "in sync" or which files differ from the MoM's."""
    return _runner.drift(__opts__)


def key(dc, action, minion):
    """Accept, reject or delete minion ``minion``'s key on DC ``dc`` (needs key_management on both masters)."""
    return _runner.key(__opts__, str(dc), str(action), str(minion))


def keys():
    """DC uplink keys by state (accepted, pending, rejected) with their key ids."""
    return _runner.keys(__opts__)


def accept(dc, key_id=None):
    """Accept the uplink key DC ``dc`` announced (pending or rejected) if its key id is ``key_id``.

    Compare ``key_id`` with the one the DC's master logs at start; without it, nothing is
    accepted and the pending key id is shown.
    """
    return _runner.accept(__opts__, str(dc), None if key_id is None else str(key_id))


def reject(dc):
    """Reject DC ``dc``'s key: its uplink batches and status are no longer trusted."""
    return _runner.reject(__opts__, str(dc))


def pubkey():
    """The public key DC masters must list in ``trusted_keys`` (created on first use)."""
    return _runner.pubkey(__opts__)
