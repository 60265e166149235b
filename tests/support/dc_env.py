"""A DC engine's jobs loop (JobConsumer) with fakes for the Salt side, for the tests of jobs and sub-jobs."""

from __future__ import annotations

import os
import threading

from salt_redis_syndic.config import load_settings
from salt_redis_syndic.jobs.consumer import JobConsumer
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.state.deadletter import DeadLetters
from salt_redis_syndic.state.ledger import DcLedger
from salt_redis_syndic.state.spool import Spool
from salt_redis_syndic.wire.jobs import encode_job, make_job

from support.fakes import FakeBus, FakeCache, FakePublisher

JID = "20240501123456789012"


class Env:
    """A DC engine's jobs loop with fakes for Salt and real spool/ledger/dead letters on disk."""

    def __init__(self, tmp_path, signer):
        self.tmp = tmp_path
        self.settings = load_settings({"id": "dc-east", "cachedir": str(tmp_path), "redis_syndic": {
            "role": "dc", "dc": "east", "redis_url": "redis://127.0.0.1:1/0", "trusted_keys": [signer.public_pem],
            "clock_skew": 5, "publish_timeout": 7}})
        self.signer = signer
        self.publisher = FakePublisher()
        self.cache = FakeCache()
        self.bus = FakeBus()
        self.spool = Spool(self.settings.spool_dir, fsync=False)
        self.ledger_path = os.path.join(self.settings.state_dir, "dc.sqlite")
        self.deadletter_dir = os.path.join(self.settings.state_dir, "deadletter")
        self.counters = Counters()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.ledger = DcLedger(self.ledger_path)
        self.consumer = self.new_consumer()
        self.consumer.joined_at = 0.0  # a DC that joined long ago: these tests issue jobs in the past

    def new_consumer(self):
        return JobConsumer(self.settings, self.publisher, self.cache, self.bus, self.spool, self.ledger,
                           DeadLetters(self.deadletter_dir, "redis_syndic:deadletter", 100, None),
                           self.counters, self.stop, self.wake)

    def restart(self):
        """A new engine process: fresh objects, same files."""
        self.ledger.close()
        self.ledger = DcLedger(self.ledger_path)
        self.consumer = self.new_consumer()

    def entry(self, jid=JID, ttl=900.0, now=None, signer=None, **load):
        base = {"fun": "test.ping", "arg": [], "tgt": "*", "tgt_type": "glob", "jid": jid, "ret": "", "user": "root"}
        base.update(load)
        job = make_job(base, origin="mom1", ttl=ttl, now=now)
        return {k.encode(): v for k, v in encode_job(job, signer or self.signer).items()}

    def acks(self):
        out = []
        for item in self.spool.pending():
            out.extend(self.spool.read(item))
        return out

    def deadletters(self):
        return DeadLetters(self.deadletter_dir, "redis_syndic:deadletter", 100, None).local()
