"""Salt returner ``redis_syndic``, used as a DC master's ``event_return``.

Returns of jobs bridged from a master of masters are appended to a durable local spool;
the DC engine ships them to Redis.  It never raises into EventReturn (which would drop the
batch) and never waits on the network.
"""

__virtualname__ = "redis_syndic"

try:
    from salt_redis_syndic import returner as _returner

    _IMPORT_ERROR = None
except ImportError as _err:
    _returner = None
    _IMPORT_ERROR = str(_err)


def __virtual__():
    if _returner is None:
        return False, f"redis_syndic returner: cannot import salt_redis_syndic ({_IMPORT_ERROR})"
    return __virtualname__


def event_return(events):
    """Spool the returns of bridged jobs found in ``events``."""
    _returner.event_return(events, __opts__)


def returner(ret):
    """Not a per-minion returner: returns travel through the master's event_return."""
    _returner.warn_direct_use()
