"""Salt event tags the bridge reads or fires about a job: the patterns and the builders.

One home so the reading side (publisher, shipper, relay, estate) and the firing side
(collector, find_job answers) agree on one spelling.  ``\\Z`` and ``[0-9]`` (re.ASCII):
``$`` would also match before a trailing newline, ``\\d`` any Unicode digit.
"""

from __future__ import annotations

import re

# A jid inside a tag: Salt's 20 digits and an optional suffix (the wire records bound its length).
_JID = r"(?P<jid>[0-9]{20}[0-9A-Za-z_]*)"
_MINION = r"(?P<minion>[^/]+)"

# ``salt/job/<jid>/publish``: a master publishing a job (what the MoM sends down).
PUBLISH_TAG = re.compile(rf"^salt/job/{_JID}/publish\Z", re.ASCII)
# ``salt/job/<jid>/ret/<minion>``: a minion's return.
RET_TAG = re.compile(rf"^salt/job/{_JID}/ret/{_MINION}\Z", re.ASCII)
# ``salt/minion/<minion>/start``: a minion (re)started.
START_TAG = re.compile(rf"^salt/minion/{_MINION}/start\Z", re.ASCII)
# ``syndic/<dc>/salt/job/<jid>/new``: what a DC targeted, as Salt's CLI waits for it.
DC_NEW_TAG = re.compile(rf"^syndic/[^/]+/salt/job/{_JID}/new\Z", re.ASCII)
# ``redis_syndic/job/<jid>/released``: every DC answered; the job's full minion list.
RELEASED_TAG = re.compile(rf"^redis_syndic/job/{_JID}/released\Z", re.ASCII)


def ret_tag(jid: str, minion: str) -> str:
    """The tag of ``minion``'s return for ``jid`` (matched by :data:`RET_TAG`)."""
    return f"salt/job/{jid}/ret/{minion}"


def dc_new_tag(dc: str, jid: str) -> str:
    """The tag announcing the minions ``dc`` targeted for ``jid`` (matched by :data:`DC_NEW_TAG`)."""
    return f"syndic/{dc}/salt/job/{jid}/new"


def job_event_tag(jid: str, *what: str) -> str:
    """The bridge's own event about ``jid``: ``redis_syndic/job/<jid>/<what>...``."""
    return "/".join(("redis_syndic/job", jid, *what))
