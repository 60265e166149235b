"""MoM publish side: every ``salt/job/<jid>/publish`` event on the MoM bus -> a signed job stream entry.

The event carries the full minion-bound load; it is wrapped in a versioned envelope with the MoM
id, issue time and expiry, signed, recorded in the outbox (MoM ledger) and appended to the job
stream.  At start it appends what a previous run recorded but never sent, and recovers jobs
published while the engine was not running from the job cache.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Mapping

from ..config import Settings
from ..errors import RejectedEntry
from ..events.forwarding import DownForwarder
from ..runtime import Backoff, Counters, ListenBus, RateLimitedLog
from ..security.confidential import payload_keys
from ..security.signing import Signer
from ..state.mom_ledger import MomLedger
from ..transport.connection import TRANSIENT, describe_error, make_client
from ..transport.keys import Keys
from ..transport.stream import JobStream
from ..wire.codec import pack, unpack
from ..wire.jobs import JobEnvelope, encode_events, encode_job, make_job
from ..wire.subjobs import job_identity
from ..wire.tags import PUBLISH_TAG, job_event_tag
from . import findjob
from .targeting import BadTarget, dcs_from_load, is_relayed

log = logging.getLogger(__name__)




# Users whose jobs carry no auth_list (the master's own key): the only ones safe to replay from
# the saved load, which does not keep the auth_list a DC master re-checks.
_REPLAYABLE_USERS = ("root",)


class JobPublisher:
    """The ``publish`` loop: MoM event bus -> signed entries on the job stream."""

    def __init__(self, settings: Settings, bus: ListenBus, signer: Signer, published: "queue.Queue[tuple[Any, ...]]",
                 counters: Counters, stop: threading.Event, *, ledger: MomLedger,
                 recent_loads: Any = None, master_user: str = "root",
                 owners: Callable[[list[str]], Mapping[str, str | None]] | None = None) -> None:
        self.owners = owners  # mirrored key -> DC (estate.keymirror), to answer find_job for unaddressed minions
        self.ledger = ledger
        self.recent_loads = recent_loads
        self.replayable_users = {*_REPLAYABLE_USERS, master_user}
        self.settings = settings
        self.bus = bus
        self.signer = signer
        self.payload_keys = payload_keys(settings.dc_payload_keys, "dc_payload_keys")
        self.published = published
        self.counters = counters
        self.stop = stop
        self.keys = Keys(settings.namespace)
        self._rl = RateLimitedLog(log)
        self.down = DownForwarder(settings)
        # The sub-job identity of each entry not yet appended, by id() of its fields: a batch
        # sends several entries under one jid, each kept and confirmed on its own in the outbox.
        self._subs: dict[int, str] = {}

    def _entry(self, job: JobEnvelope, fields: dict[str, bytes], sub: str | None = None) -> tuple[JobEnvelope, dict[str, bytes]]:
        self._subs[id(fields)] = job_identity(job.load) if sub is None else sub
        return job, fields

    def _sub(self, fields: dict[str, bytes]) -> str:
        return self._subs.get(id(fields), "")

    def job_from_event(self, tag: str, data: Mapping[str, Any]) -> JobEnvelope | None:
        match = PUBLISH_TAG.match(tag)
        if not match or not isinstance(data, Mapping) or "fun" not in data or "tgt" not in data:
            return None
        load = dict(data)
        load["jid"] = match.group("jid")
        if "auth_list" not in load and str(load.get("user", "")) not in self.replayable_users:
            # Salt 3006 keeps no auth_list (see salt_adapter.publish): a DC master would run the
            # job with the engine's own rights.  The master's own users have an empty one anyway.
            log.error("redis_syndic: job %s (%s by %s) is NOT sent to the DCs: this Salt did not record the "
                      "user's authorization list (Salt 3006); run it as %s, or upgrade the MoM to Salt 3007+",
                      load["jid"], load.get("fun"), load.get("user"), " or ".join(sorted(self.replayable_users)))
            self.counters.inc("jobs_no_auth_list")
            self.bus.fire({"jid": load["jid"], "fun": load.get("fun"), "user": load.get("user")},
                          job_event_tag(load["jid"], "no_auth_list"))
            return None
        return self.envelope(load)

    def envelope(self, load: dict[str, Any], now: float | None = None) -> JobEnvelope | None:
        """The job for ``load``, addressed to the DCs its metadata names (None: refused, reported)."""
        try:
            dcs = None if is_relayed(load, self.settings.master_id) else dcs_from_load(load)
        except BadTarget as err:
            # Fail closed: a job meant for some DCs must never be widened to all of them.
            log.error("redis_syndic: job %s (%s) not sent to any DC: %s", load["jid"], load.get("fun"), err)
            self.counters.inc("jobs_bad_target")
            self.bus.fire({"jid": load["jid"], "reason": str(err)}, job_event_tag(load["jid"], "bad_target"))
            return None
        return make_job(load, origin=self.settings.master_id, ttl=self.settings.job_ttl, now=now, dcs=dcs)

    def recover(self) -> list[tuple[JobEnvelope, dict[str, bytes]]]:
        """What a previous run left: outbox entries never appended, and jobs it never saw.

        A job published while the engine was not running (killed, restarting) is only in the
        job cache.  It is replayed from the saved load when it is younger than ``job_ttl`` and
        than the bridge itself, and its user is the master's own (the saved load lacks the
        ``auth_list`` a DC master re-checks for other users: those are reported, not run).
        """
        from ..salt_adapter.publish import publish_load  # the saved load -> Salt's minion-bound load

        out: list[tuple[JobEnvelope, dict[str, bytes]]] = []
        for jid, packed, expires_at, sub in self.ledger.unsent_subs():
            fields = unpack_fields(packed)
            if fields is not None and expires_at > time.time():
                log.warning("redis_syndic: job %s was recorded but maybe never appended before a restart; appending it", jid)
                out.append(self._entry(JobEnvelope(jid=jid, load={}, origin=self.settings.master_id, issued_at=0.0,
                                                   expires_at=expires_at, dcs=entry_dcs(fields)), fields, sub))
        if self.recent_loads is None:
            return out
        now = time.time()
        try:
            loads = self.recent_loads(max(now - self.settings.job_ttl, self.ledger.created_at()))
        except Exception as err:  # a recovery scan must never stop the publisher
            log.error("redis_syndic: cannot scan the job cache for jobs published while the engine was down: %s", err)
            return out
        known = self.ledger.in_outbox([jid for jid, _, _ in loads]) | {job.jid for job, _ in out}
        for jid, at, saved in loads:
            if jid in known or "tgt" not in saved or "fun" not in saved or str(saved.get("fun", "")).startswith(("runner.", "wheel.")):
                continue
            user = str(saved.get("user", ""))
            if user not in self.replayable_users:
                log.error("redis_syndic: job %s (%s by %s) was published while the engine was down and is NOT sent "
                          "to the DCs: its authorization list was not saved; run it again", jid, saved.get("fun"), user)
                self.counters.inc("jobs_unrecoverable")
                self.bus.fire({"jid": jid, "fun": saved.get("fun"), "user": user}, job_event_tag(jid, "unrecoverable"))
                continue
            job = self.envelope(publish_load(jid, saved), now=at)
            if job is None:
                continue
            log.warning("redis_syndic: job %s (%s) was published while the engine was down; sending it to the DCs now",
                        jid, saved.get("fun"))
            self.counters.inc("jobs_recovered")
            fields = encode_job(job, self.signer, self.payload_keys)
            self.ledger.add_outbox([(jid, pack(fields), job.expires_at, job_identity(job.load))])
            out.append(self._entry(job, fields))
        return out

    def run(self) -> None:
        client = make_client(self.settings.redis)
        stream = JobStream(client, self.keys.jobs, self.settings.stream_maxlen)
        pending: list[tuple[JobEnvelope, dict[str, bytes]]] = self.recover()
        recorded = len(pending)
        backoff = Backoff(base=0.1, cap=5.0)
        while not self.stop.is_set():
            event = self.bus.get(wait=0.0 if pending else 0.5)
            while event is not None:  # drain what is already queued: one round trip for a burst
                job = self.job_from_event(*event)
                if job is not None:
                    self.answer_find_job(job)
                    pending.append(self._entry(job, encode_job(job, self.signer, self.payload_keys)))
                else:
                    self.down.offer(*event)
                if len(pending) >= 200 or len(self.down.pending) >= 200:
                    break
                event = self.bus.get(wait=0.0)
            if not pending and not self.down.pending:
                continue
            if recorded < len(pending):  # into the outbox before Redis: a crash now loses nothing
                self.ledger.add_outbox([(job.jid, pack(fields), job.expires_at, self._sub(fields))
                                        for job, fields in pending[recorded:]])
                recorded = len(pending)
            try:
                entries = [fields for _, fields in pending]
                if self.down.pending:  # one signed entry for the events of this round (not kept: best effort)
                    entries.append(encode_events(self.settings.master_id, self.down.pending, self.signer,
                                                 self.settings.job_ttl))
                ids = stream.append(entries)
            except TRANSIENT as err:
                self.counters.inc("reconnects")
                self._rl.log(logging.WARNING, "xadd",
                             "redis_syndic: cannot append %d job(s) to the stream at %s (%s); retrying",
                             len(pending), self.settings.redis.safe_url, describe_error(err))
                self.stop.wait(backoff.next())
                continue
            backoff.reset()
            self.ledger.mark_sent([(job.jid, entry_id, self._sub(fields)) for (job, fields), entry_id in zip(pending, ids)])
            for job, fields in pending:
                log.info("redis_syndic: job %s (%s) sent to %s", job.jid, job.load.get("fun"),
                         f"DC(s) {', '.join(job.dcs)}" if job.dcs is not None else "the DCs")
                self.published.put((job.jid, job.expires_at, job.dcs, self._subs.pop(id(fields), "")))
            self.counters.inc("jobs_forwarded", len(pending))
            self.counters.inc("events_forwarded", len(self.down.pending))
            pending, recorded = [], 0
            self.down.pending = []

    def answer_find_job(self, job: JobEnvelope) -> None:
        """For a find_job about a bridged job: answer for the minions that cannot be running it.

        They are minions of DCs the job was not addressed to, or that their DC acknowledged
        without targeting; see :mod:`.findjob` (the waiting CLI would report them as not returned).
        """
        if self.owners is None:
            return
        question = findjob.asked(job.load)
        if question is None:
            return
        asked_jid, minions = question
        packed = self.ledger.outbox_entry(asked_jid)
        fields = unpack_fields(packed) if packed is not None else None
        if fields is None:
            return  # not a job this MoM sent
        try:
            owners = self.owners(minions)
        except Exception as err:  # a key store error: Salt's CLI reports them as not returned  # noqa: BLE001
            self._rl.log(logging.WARNING, "owners", "redis_syndic: cannot read the mirrored minion keys: %s", err)
            return
        addressed = entry_dcs(fields)
        whys = {}
        if addressed is not None:
            whys = {m: findjob.not_addressed_why(asked_jid, m, dc, addressed)
                    for m, dc in findjob.unaddressed(minions, owners, addressed).items()}
        acks = self.ledger.settled_acks(asked_jid)
        for minion, dc in findjob.untargeted([m for m in minions if m not in whys], owners, acks).items():
            whys[minion] = findjob.not_targeted_why(asked_jid, minion, dc, acks[dc][0])
        for minion, why in whys.items():
            tag, data = findjob.answer(job.jid, asked_jid, minion, why)
            self.bus.fire(data, tag)
        if whys:
            log.debug("redis_syndic: find_job %s: %d minion(s) cannot be running job %s", job.jid, len(whys), asked_jid)

def unpack_fields(packed: bytes) -> dict[str, bytes] | None:
    """Stream entry fields as the outbox keeps them (our own writing; None if the file is damaged)."""
    try:
        fields = unpack(packed, 1 << 30)
    except RejectedEntry:
        return None
    return fields if isinstance(fields, dict) else None


def entry_dcs(fields: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The DCs an outbox entry (our own signed writing) is addressed to; None: every DC."""
    try:
        doc = unpack(fields["b"], 1 << 30)
    except (KeyError, RejectedEntry):
        return None
    dcs = doc.get("dcs") if isinstance(doc, dict) else None
    return tuple(dcs) if isinstance(dcs, list) else None
