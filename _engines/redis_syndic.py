"""Salt engine ``redis_syndic``: bridges a master of masters and its DC masters through Redis.

Configure with a ``redis_syndic:`` block in the master config (``role: mom`` on the MoM,
``role: dc`` with ``dc: <name>`` on each DC master) and ``engines: [{redis_syndic: {}}]``.
Engine kwargs override the block.  All logic lives in the ``salt_redis_syndic`` package.
"""

__virtualname__ = "redis_syndic"

try:
    from salt_redis_syndic import engine as _engine

    _IMPORT_ERROR = None
except ImportError as _err:  # dependency missing: say why instead of failing to load
    _engine = None
    _IMPORT_ERROR = str(_err)


def __virtual__():
    if _engine is None:
        return False, f"redis_syndic engine: cannot import salt_redis_syndic ({_IMPORT_ERROR})"
    return __virtualname__


def start(**kwargs):
    """Run the configured role until the master stops."""
    _engine.start(__opts__, kwargs)
