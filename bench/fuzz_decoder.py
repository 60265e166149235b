"""Fuzz the Redis trust boundary: decode_job (through JobConsumer.handle), decode_batch, decode_status.

Feeds random and mutated inputs through the real decode/verify paths and checks two things:

1. no input makes a decoder raise anything but ``RejectedEntry`` (any other exception is a
   crash: recorded with its traceback and the input's repr, truncated; the script exits 1);
2. no hostile input reaches publishing: job entries go through ``JobConsumer.handle`` with a
   fake Publisher that records calls, a Verifier trusting one test key, in-memory fakes for the
   job cache and event bus, and a real Spool / DcLedger in a temp dir.  Publishes of mutated or
   unsigned inputs must be 0, while a control set of correctly signed, unexpired jobs (1 input
   in 1000) must all be published (proving the harness sees a publish).

Dead letters keep the real trimming and packing of the rejected entry but are counted in
memory instead of written as files (file I/O would dominate the run).

``job_signed_struct`` inputs are hostile bodies *signed with the trusted key* (what the
structural checks behind the signature see).  They may legitimately be published; each one
that is, is checked against a strict reading of the envelope format and listed if it is not
within it (reported, not a failure: only the MoM's key can produce such bodies).

    python -m bench.fuzz_decoder [--inputs 100000] [--seed N]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from typing import Any, Callable

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import load_settings
from salt_redis_syndic.errors import RejectedEntry
from salt_redis_syndic.jobs.consumer import JobConsumer
from salt_redis_syndic.runtime import Counters
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.state.deadletter import DeadLetters, _trim
from salt_redis_syndic.state.ledger import DcLedger
from salt_redis_syndic.state.spool import Spool
from salt_redis_syndic.wire.codec import VERSION, pack
from salt_redis_syndic.wire.jobs import LOAD_FIELDS, encode_job, make_job
from salt_redis_syndic.wire.status import DcStatus, decode_status
from salt_redis_syndic.wire.uplink import ACK_STATUSES, Ack, Return, decode_batch, encode_batch

from .common import write_result

MAX_BYTES = 64 * 1024 * 1024  # the default max_entry_bytes
REPR_KEEP = 400
CRASH_EXAMPLES = 5  # kept per distinct crash site

# Strict (ASCII, full-match) reading of the format, used only to judge what signed inputs got through.
STRICT_JID = re.compile(r"[0-9]{20}[0-9A-Za-z_]{0,24}", re.ASCII)
STRICT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
STRICT_MINION = re.compile(r"[^/\\\x00]{1,255}")

# (category, weight); control inputs are every 1000th input on top of these.
CATEGORIES: list[tuple[str, int]] = [
    ("job_random", 6),           # random bytes in b/s/k
    ("job_body_bytes", 12),      # bit flip / insert / delete / truncate of a signed body, signature kept
    ("job_signature", 7),        # signature mutated, swapped, truncated, extended
    ("job_key_id", 6),           # key id mutated, untrusted, non-ascii; attacker-signed bodies
    ("job_fields", 5),           # the stream entry's field map itself: missing/extra/wrong-typed fields
    ("job_unsigned_struct", 8),  # hostile msgpack bodies with a wrong / stolen signature
    ("job_signed_struct", 10),   # hostile msgpack bodies signed by the trusted key (structure checks)
    ("batch_random", 4),
    ("batch_bytes", 10),
    ("batch_struct", 12),
    ("status_random", 3),
    ("status_bytes", 7),
    ("status_struct", 10),
]
HOSTILE_JOB = {"job_random", "job_body_bytes", "job_signature", "job_key_id", "job_fields", "job_unsigned_struct"}


class Raw:
    """Pre-encoded msgpack bytes to splice into a document (deep nesting, invalid UTF-8...)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Raw({self.data[:40]!r}{'...' if len(self.data) > 40 else ''} len={len(self.data)})"


def packraw(obj: Any) -> bytes:
    """msgpack-encode ``obj``, splicing :class:`Raw` values in as they are."""
    if isinstance(obj, Raw):
        return obj.data
    if isinstance(obj, dict):
        n = len(obj)
        head = bytes([0x80 | n]) if n < 16 else (b"\xde" + n.to_bytes(2, "big") if n < 65536 else b"\xdf" + n.to_bytes(4, "big"))
        return head + b"".join(packraw(k) + packraw(v) for k, v in obj.items())
    if isinstance(obj, list):
        n = len(obj)
        head = bytes([0x90 | n]) if n < 16 else (b"\xdc" + n.to_bytes(2, "big") if n < 65536 else b"\xdd" + n.to_bytes(4, "big"))
        return head + b"".join(packraw(v) for v in obj)
    return msgpack.packb(obj, use_bin_type=True)


# ----------------------------------------------------------------------------- fakes for Salt


class FakePublisher:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], str, float]] = []

    def publish(self, load, origin, timeout):
        self.calls.append((dict(load), origin, timeout))
        return ["m1", "m2"]


class FakeCache:
    def get_load(self, jid):
        return {}


class FakeBus:
    def __init__(self) -> None:
        self.fired = 0

    def fire(self, data, tag):
        self.fired += 1
        return True


class CountingDeadLetters(DeadLetters):
    """Real trimming and packing of the rejected entry; counted in memory instead of written."""

    def __init__(self) -> None:
        super().__init__("/nonexistent", "redis_syndic:deadletter", 100, None)
        self.last: str | None = None
        self.count = 0
        self.bytes = 0

    def add(self, source, entry_id, reason, detail, raw):
        record = pack({"at": time.time(), "source": source, "entry_id": entry_id, "reason": reason,
                       "detail": detail, "raw": _trim(raw)})
        self.last = reason
        self.count += 1
        self.bytes += len(record)


# ----------------------------------------------------------------------------- generators


class Gen:
    def __init__(self, rng: random.Random, trusted: Signer, attacker: Signer) -> None:
        self.rng = rng
        self.trusted = trusted
        self.attacker = attacker
        self.serial = 0
        self.now = time.time()

    # -- primitives ------------------------------------------------------------------------
    def jid(self) -> str:
        self.serial += 1
        return f"2026{self.serial:016d}"

    def rbytes(self, lo: int = 0, hi: int = 200) -> bytes:
        return self.rng.randbytes(self.rng.randint(lo, hi))

    def rstr(self) -> str:
        r = self.rng
        pools = [
            "abcdefghijklmnopqrstuvwxyz0123456789_.-",
            "ÄäÖöÜüßéèçñ中文日本語한국어",
            "\u202e\u200b\ufeff\u0000\n\r\t /\\*?[]{}%$;|&`'\"",
            "٠١٢٣٤٥٦٧٨٩０１２３",  # non-ASCII digits (\d matches them)
            "🙂💥🧨𝕏",
        ]
        pool = r.choice(pools)
        return "".join(r.choice(pool) for _ in range(r.randint(0, r.choice([4, 30, 300]))))

    def number(self) -> Any:
        return self.rng.choice([
            0, -1, 1, 2, True, False, 2 ** 63 - 1, -(2 ** 63), 2 ** 64 - 1, -(2 ** 31),
            float("nan"), float("inf"), float("-inf"), -0.0, 1e308, -1e308, 5e-324,
            self.now, self.now + 1e9, self.now - 1e9, self.rng.uniform(-1e12, 1e12),
        ])

    def deep(self) -> Raw:
        depth = self.rng.choice([10, 200, 511, 900, 1000, 1023, 1024, 1025, 2000, 100_000])
        opener = self.rng.choice([b"\x91", b"\x81\xa1k", b"\x81\x01"])
        leaf = self.rng.choice([b"\xc0", b"\x90", b"\x80", b"\xa1x"])
        return Raw(opener * depth + leaf)

    def bad_raw(self) -> Raw:
        return Raw(self.rng.choice([
            b"\xa2\xff\xfe",                     # str with invalid UTF-8
            b"\xc1",                             # never-used byte
            b"\xd4\x01\x02",                     # ext type
            b"\xc7\x00\x05",                     # empty ext
            b"\xd6\xff\x00\x00\x00\x00",         # timestamp ext
            b"\xd7\xff" + b"\xff" * 8,           # timestamp ext, out-of-range
            b"\xdd\xff\xff\xff\xff",             # array32 with a huge count
            b"\xdf\xff\xff\xff\xff",             # map32 with a huge count
            b"\xdb\x00\x00\x10\x00",             # str32 longer than the input
            b"\x81\x91\x01\x01",                 # map with a list key
            b"\x81\x81\x01\x01\x01",             # map with a map key
            b"\x82\xa1a\x01\xa1a\x02",           # duplicate keys
            b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x01",  # NaN payload
        ]))

    def value(self, depth: int = 0) -> Any:
        r = self.rng
        kind = r.randrange(12 if depth < 3 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return self.number()
        if kind == 2:
            return self.rstr()
        if kind == 3:
            return self.rbytes(0, 64)
        if kind == 4:
            return r.choice([True, False])
        if kind == 5:
            return self.bad_raw() if r.random() < 0.5 else self.deep()
        if kind in (6, 7, 8):
            return [self.value(depth + 1) for _ in range(r.randint(0, 5))]
        keys = [self.rstr(), r.randint(-5, 5), None, b"k", 1.5, True, "fun", "jid", "return", "id"]
        return {r.choice(keys): self.value(depth + 1) for _ in range(r.randint(0, 5))}

    def mutate_bytes(self, data: bytes) -> bytes:
        r = self.rng
        b = bytearray(data)
        for _ in range(r.choice([1, 1, 1, 2, 3, 8])):
            op = r.randrange(8)
            if op == 0 and b:  # bit flip
                i = r.randrange(len(b))
                b[i] ^= 1 << r.randrange(8)
            elif op == 1 and b:  # byte set
                b[r.randrange(len(b))] = r.choice([0x00, 0xff, 0xc1, 0xc0, 0xdd, 0xdf, 0xdb, 0x7f, 0x80, r.randrange(256)])
            elif op == 2:  # insert
                i = r.randint(0, len(b))
                b[i:i] = r.choice([r.randbytes(r.randint(1, 16)), bytes([r.randrange(256)]), b"\xdd\xff\xff\xff\xff"])
            elif op == 3 and b:  # delete
                i = r.randrange(len(b))
                del b[i:i + r.randint(1, 16)]
            elif op == 4:  # truncate
                del b[r.randint(0, len(b)):]
            elif op == 5 and b:  # duplicate a slice
                i = r.randrange(len(b))
                j = min(len(b), i + r.randint(1, 32))
                b[i:i] = b[i:j]
            elif op == 6 and b:  # swap two bytes
                i, j = r.randrange(len(b)), r.randrange(len(b))
                b[i], b[j] = b[j], b[i]
            elif op == 7:  # append garbage
                b += r.randbytes(r.randint(1, 8))
        out = bytes(b)
        if out == data:  # a mutation must change something
            out = data + b"\x00"
        return out

    # -- jobs ------------------------------------------------------------------------------
    def job_load(self, jid: str) -> dict[str, Any]:
        return {"fun": "test.ping", "arg": [], "tgt": "*", "tgt_type": "glob", "jid": jid, "ret": "", "user": "root"}

    def job_doc(self, jid: str, signer: Signer | None = None, issued: float | None = None, ttl: float = 900.0) -> dict[str, Any]:
        issued = self.now if issued is None else issued
        return {"v": VERSION, "kind": "job", "jid": jid, "load": self.job_load(jid), "origin": "mom1",
                "issued_at": issued, "expires_at": issued + ttl, "kid": (signer or self.trusted).key_id}

    def signed_entry(self, signer: Signer | None = None, jid: str | None = None) -> dict[bytes, bytes]:
        """A correct entry for a fresh jid (issued now, valid for 15 minutes), as Redis returns it."""
        signer = signer or self.trusted
        job = make_job(self.job_load(jid or self.jid()), origin="mom1", ttl=900.0)
        return {k.encode(): v for k, v in encode_job(job, signer).items()}

    def job_random(self) -> Any:
        r = self.rng
        fields = {b"b": self.rbytes(0, 400), b"s": self.rbytes(64, 64) if r.random() < 0.7 else self.rbytes(0, 100),
                  b"k": r.choice([self.trusted.key_id.encode(), self.rbytes(0, 32)])}
        if r.random() < 0.2:  # random field names too
            fields = {self.rbytes(0, 3): self.rbytes(0, 100) for _ in range(r.randint(0, 5))}
        return fields

    def job_body_bytes(self) -> Any:
        e = self.signed_entry()
        e[b"b"] = self.mutate_bytes(e[b"b"])
        return e

    def job_signature(self) -> Any:
        r = self.rng
        e = self.signed_entry()
        s = e[b"s"]
        op = r.randrange(9)
        if op == 0:
            s = self.mutate_bytes(s)
        elif op == 1:
            s = s[:r.randrange(64)]
        elif op == 2:
            s = s + self.rbytes(1, 8)
        elif op == 3:
            s = b""
        elif op == 4:
            s = b"\x00" * 64
        elif op == 5:
            s = r.randbytes(64)
        elif op == 6:  # a genuine signature of another body (cut and paste)
            s = self.signed_entry()[b"s"]
        elif op == 7:  # signature kept, bytes appended to the signed body
            e[b"b"] = e[b"b"] + pack({"x": 1})
        else:  # flip one bit of R or S (malleability)
            i = r.randrange(64)
            s = s[:i] + bytes([s[i] ^ (1 << r.randrange(8))]) + s[i + 1:]
        e[b"s"] = s
        return e

    def job_key_id(self) -> Any:
        r = self.rng
        op = r.randrange(8)
        if op == 0:  # attacker key, own kid: untrusted
            return self.signed_entry(self.attacker)
        if op == 1:  # attacker signs, claims the trusted kid (body kid trusted too)
            doc = self.job_doc(self.jid())
            body = pack(doc)
            return {b"b": body, b"s": self.attacker.sign(body), b"k": self.trusted.key_id.encode()}
        e = self.signed_entry()
        k = e[b"k"]
        if op == 2:
            k = self.mutate_bytes(k)
        elif op == 3:
            k = r.choice([b"", b"\xff\xfe", "ключ".encode(), k.upper(), k + b"\n", b" " + k, k[:-1], k * 2])
        elif op == 4:
            k = self.rbytes(0, 200)
        elif op == 5:  # kid is the attacker's, signature the trusted one's
            k = self.attacker.key_id.encode()
        elif op == 6:  # attacker-signed body whose kid differs from the field (which names the trusted key)
            doc = self.job_doc(self.jid())
            doc["kid"] = r.choice([self.attacker.key_id, "", None, self.trusted.key_id + "x"])
            body = pack(doc)
            return {b"b": body, b"s": self.attacker.sign(body), b"k": k}
        else:
            k = k.decode().encode("utf-16")
        e[b"k"] = k
        return e

    def job_fields(self) -> Any:
        """The entry's field map itself is hostile; the genuine body never survives with its signature."""
        r = self.rng
        e: Any = self.signed_entry()
        genuine = e[b"b"]
        op = r.randrange(10)
        if op == 0:
            del e[r.choice([b"b", b"s", b"k"])]
        elif op == 1:
            e = {k.decode(): v for k, v in e.items()}  # str field names
        elif op == 2:
            key = r.choice([b"b", b"s", b"k"])
            e[key] = r.choice([e[key].decode("latin-1"), None, 0, -1, [e[key]], {b"x": e[key]}, bytearray(e[key]), 3.5])
        elif op == 3:
            e[self.rbytes(1, 8)] = self.rbytes(0, 64)  # extra field
        elif op == 4:
            e["b"] = genuine  # both spellings: the bytes one is the one verified
        elif op == 5:
            return r.choice([None, b"", genuine, [genuine, e[b"s"], e[b"k"]], list(e.items()), 42, "b", set()])
        elif op == 6:
            return {}
        elif op == 7:
            e[b"b"] = b""
        elif op == 8:
            return {k: self.value() for k in (b"b", b"s", b"k")}
        else:
            e[b"b"] = genuine + b"\x00" * r.randint(1, 100)
        for key in (b"b", "b"):  # a genuine body next to its signature is not hostile: break it
            if key in e and isinstance(e[key], (bytes, bytearray)) and bytes(e[key]) == genuine:
                e[key] = self.mutate_bytes(genuine)
                break
        return e

    def hostile_doc(self, jid: str) -> Any:
        """A structurally hostile job document (never a correct one)."""
        r = self.rng
        doc: Any = self.job_doc(jid)
        load = doc["load"]
        ops = r.randint(1, 3)
        for _ in range(ops):
            op = r.randrange(16)
            if op == 0:
                doc.pop(r.choice(list(doc) or ["v"]), None)
            elif op == 1:
                load.pop(r.choice(list(load) or ["fun"]), None)
            elif op == 2:
                doc[r.choice([self.rstr(), "extra", "load2", 1, None])] = self.value()
            elif op == 3:
                load[r.choice([self.rstr(), "cmd", "__pub_fun", "kwarg", "key", 0])] = self.value()
            elif op == 4:
                doc[r.choice(list(doc) or ["v"])] = self.value()
            elif op == 5:
                load[r.choice(list(load) + ["metadata", "ret_config", "ret_kwargs", "executor_opts", "to"])] = self.value()
            elif op == 6:
                doc[r.choice(["issued_at", "expires_at"])] = self.number()
            elif op == 7:
                doc["v"] = r.choice([0, 2, True, "1", 1.0, -1, 2 ** 64 - 1, None, [1], self.deep()])
            elif op == 8:
                doc["kind"] = r.choice(["batch", "status", "", "JOB", None, b"job", 1])
            elif op == 9:
                bad = r.choice([
                    jid[:19], jid + "\n", "٠" * 20, "０" * 20, jid + "x" * 30, jid + "/..", "", 20240501, None,
                    "\n" + jid, jid + " ", jid + "\x00", [jid], Raw(b"\xa2\xff\xfe")])
                doc["jid"] = bad
                if r.random() < 0.5:
                    load["jid"] = bad
            elif op == 10:
                doc["origin"] = r.choice(["", "-x", "mom1\n", "a" * 65, "mom 1", "mom/1", "m\x00", "мом", None, 1, self.rstr()])
            elif op == 11:
                doc["load"] = r.choice([None, [], "load", 1, self.rbytes(0, 10), self.deep(), self.bad_raw()])
            elif op == 12:
                load["fun"] = r.choice([None, 1, [], [1], ["a", None], {"x": 1}, b"test.ping", self.deep()])
                load["tgt"] = r.choice([None, 1, ["a", 2], {"x": 1}, b"*", self.rstr(), "*"])
            elif op == 13:
                load[r.choice(["arg", "tgt_type", "ret"])] = self.value()
            elif op == 14:  # time travel
                doc["issued_at"] = self.now + r.choice([3600, 1e9, 6, 5.0001])
                doc["expires_at"] = doc["issued_at"] + r.choice([-1, 0, 1, 900])
            else:
                doc = r.choice([[doc], self.value(), self.deep(), self.bad_raw(), None, 1, "job", b"job"])
                break
        if r.random() < 0.15 and isinstance(doc, dict):  # splice a deep or bad value anywhere
            (load if r.random() < 0.5 else doc)[r.choice(["arg", "metadata", "v", "jid", "x"])] = r.choice([self.deep(), self.bad_raw()])
        return doc

    def job_unsigned_struct(self) -> Any:
        r = self.rng
        body = packraw(self.hostile_doc(self.jid()))
        sig = r.choice([r.randbytes(64), self.signed_entry()[b"s"], self.attacker.sign(body), b""])
        return {b"b": body, b"s": sig, b"k": self.trusted.key_id.encode()}

    def job_signed_struct(self) -> tuple[Any, Any]:
        doc = self.hostile_doc(self.jid())
        body = packraw(doc)
        return {b"b": body, b"s": self.trusted.sign(body), b"k": self.trusted.key_id.encode()}, doc

    # -- batches ---------------------------------------------------------------------------
    def good_messages(self, dc: str) -> list[dict[str, Any]]:
        jid = self.jid()
        msgs: list[dict[str, Any]] = []
        for _ in range(self.rng.randint(0, 4)):
            if self.rng.random() < 0.5:
                msgs.append(Ack(jid, dc, self.rng.choice(ACK_STATUSES), minions=["m1", "m2"]).to_wire())
            else:
                msgs.append(Return(jid, dc, "m1", {"return": True, "id": "m1", "jid": jid, "success": True}).to_wire())
        return msgs

    def batch_random(self) -> Any:
        r = self.rng
        if r.random() < 0.3:
            return packraw(self.value())
        if r.random() < 0.1:
            return r.choice(["str", None, 1, [], bytearray(self.rbytes())])
        return self.rbytes(0, 500)

    def batch_bytes(self) -> Any:
        data = encode_batch("east", self.good_messages("east"))
        return self.mutate_bytes(data)

    def hostile_message(self, dc: str) -> Any:
        r = self.rng
        msg = r.choice(self.good_messages(dc) or [Ack(self.jid(), dc, "published").to_wire()])
        op = r.randrange(11)
        if op == 0:
            msg["dc"] = r.choice(["west", "", None, dc + "\n", dc.upper(), 1, [dc]])
        elif op == 1:
            msg["jid"] = r.choice(["", "1" * 19, "٠" * 20, "1" * 20 + "\n", "1" * 20 + "/", None, 1, "1" * 70])
        elif op == 2:
            msg["t"] = r.choice(["", "ACK", "job", None, 1, b"ack"])
        elif op == 3:
            msg["t"] = "ack"
            msg["status"] = r.choice(["ok", "", None, 1, "published\n", "PUBLISHED"])
        elif op == 4:
            msg["t"] = "ack"
            msg[r.choice(["minions", "missing"])] = r.choice([None, "m1", [None], ["a/b"], ["a\\b"], ["\x00"], [""], ["x" * 256], [1], {"m1": 1}])
        elif op == 5:
            msg["t"] = "ack"
            msg["reason"] = r.choice([None, 1, b"x", ["x"], "x" * 100_000])
        elif op == 6:
            msg["t"] = "ret"
            msg["id"] = r.choice(["", "a/b", "..\\x", "\x00", "x" * 256, None, 1])
        elif op == 7:
            msg["t"] = "ret"
            msg["id"] = "m1"
            msg["load"] = r.choice([None, [], {}, {"retcode": 0}, {"return": 1, "id": "m2"}, {"return": 1, "jid": "2" * 20},
                                    {"return": self.value(), "id": "m1"}, "load"])
        elif op == 8:
            msg[r.choice(list(msg))] = self.value()
        elif op == 9:
            msg.pop(r.choice(list(msg)))
        else:
            return self.value()
        return msg

    def batch_struct(self) -> Any:
        r = self.rng
        dc = "east"
        msgs: Any = [self.hostile_message(dc) if r.random() < 0.6 else m
                     for m in self.good_messages(dc) + [None] * r.randint(0, 4)]
        msgs = [m if m is not None else self.hostile_message(dc) for m in msgs]
        r.shuffle(msgs)
        doc: Any = {"v": VERSION, "kind": "batch", "dc": dc, "sent_at": self.now, "msgs": msgs}
        op = r.randrange(10)
        if op == 0:
            doc["dc"] = r.choice(["", "we st", "-x", "a" * 65, "east\n", None, 1, "ost", self.rstr()])
        elif op == 1:
            doc["v"] = r.choice([0, 2, True, "1", 1.0, None, [1], self.deep(), self.bad_raw()])
        elif op == 2:
            doc["kind"] = r.choice(["job", "", None, b"batch"])
        elif op == 3:
            doc["sent_at"] = self.number() if r.random() < 0.7 else r.choice([None, "now", [1]])
        elif op == 4:
            doc["msgs"] = r.choice([None, {}, "msgs", 1, self.deep(), self.bad_raw(), [self.deep()] * 3])
        elif op == 5:
            doc.pop(r.choice(list(doc)))
        elif op == 6:
            doc[self.rstr()] = self.value()
        elif op == 7:  # many messages
            doc["msgs"] = [self.hostile_message(dc) for _ in range(r.randint(20, 200))]
        elif op == 8:
            doc = r.choice([[doc], None, self.value()])
        # op 9: envelope intact, only the messages are hostile
        return packraw(doc)

    # -- status ----------------------------------------------------------------------------
    def status_doc(self) -> dict[str, Any]:
        st = DcStatus(dc="east", last_seen=self.now, cursor="1-0", stream_last_id="1-0", lag_seconds=0.1,
                      spool_depth=0, minion_count=2, version="1.0", master_id="dc-east",
                      counters={"jobs_published": 3}, spool_warn_depth=1000, spool_growing=False)
        return {"v": VERSION, "kind": "status", **st.__dict__}

    def status_random(self) -> Any:
        r = self.rng
        if r.random() < 0.3:
            return packraw(self.value())
        return self.rbytes(0, 400)

    def status_bytes(self) -> Any:
        return self.mutate_bytes(pack(self.status_doc()))

    def status_struct(self) -> Any:
        r = self.rng
        doc: Any = self.status_doc()
        for _ in range(r.randint(1, 3)):
            op = r.randrange(9)
            if op == 0:
                doc[r.choice(["last_seen", "lag_seconds", "spool_depth", "minion_count", "spool_warn_depth"])] = self.number()
            elif op == 1:
                doc["counters"] = r.choice([
                    {"x": self.number()}, {1: 1, None: 2, b"k": 3}, {"x": self.value()}, None, [], "c",
                    {self.rstr(): self.number() for _ in range(r.randint(0, 10))}])
            elif op == 2:
                doc.pop(r.choice(list(doc)))
            elif op == 3:
                doc[r.choice(list(doc))] = self.value()
            elif op == 4:
                doc["dc"] = r.choice(["", "a/b", "a" * 65, "east\n", None, self.rstr()])
            elif op == 5:
                doc[r.choice(["cursor", "stream_last_id", "version", "master_id"])] = r.choice([None, 1, b"x", self.rstr(), self.deep()])
            elif op == 6:
                doc["kind"] = r.choice(["batch", None, ""])
            elif op == 7:
                doc["spool_growing"] = self.value()
            else:
                doc = r.choice([[doc], None, self.value()])
                break
        return packraw(doc)


# ----------------------------------------------------------------------------- the harness


def _shape(what: str) -> str:
    """Classify the offending value of a finding: trailing newline, non-ASCII digits, other."""
    if "\\n'" in what:
        return "trailing newline"
    if re.search(r"[^\x00-\x7f]", what) and re.search(r"\d", what.split("'")[1] if "'" in what else ""):
        return "non-ASCII digits"
    if re.search(r"[^\x00-\x7f]", what):
        return "non-ASCII"
    return "other"


def strict_job_problems(doc: Any, trusted_kid: str, now: float) -> list[str]:
    """Why a published signed body is outside a strict reading of the job format ([] if it is not)."""
    out = []
    if not isinstance(doc, dict):
        return ["body is not a map"]
    jid, origin, load = doc.get("jid"), doc.get("origin"), doc.get("load")
    if not (isinstance(jid, str) and STRICT_JID.fullmatch(jid)):
        out.append(f"jid {jid!r} is not 20 ASCII digits + [0-9A-Za-z_]{{0,24}}")
    if not (isinstance(origin, str) and STRICT_NAME.fullmatch(origin)):
        out.append(f"origin {origin!r} is not a strict name")
    for key in ("issued_at", "expires_at"):
        value = doc.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            out.append(f"{key} {value!r} is not a finite number")
    if doc.get("kid") != trusted_kid:
        out.append("body kid is not the signing key")
    if not isinstance(load, dict):
        return out + ["load is not a map"]
    if not set(load) <= set(LOAD_FIELDS):
        out.append(f"load keys {sorted(map(repr, set(load) - set(LOAD_FIELDS)))} outside LOAD_FIELDS")
    if load.get("jid") != jid:
        out.append("load jid differs")
    return out


class Harness:
    def __init__(self, tmp: str, seed: int) -> None:
        rng = random.Random(seed)
        self.trusted = Signer(Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)))
        self.attacker = Signer(Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)))
        self.gen = Gen(rng, self.trusted, self.attacker)
        self.settings = load_settings({"id": "dc-east", "cachedir": tmp, "redis_syndic": {
            "role": "dc", "dc": "east", "redis_url": "redis://127.0.0.1:1/0",
            "trusted_keys": [self.trusted.public_pem], "clock_skew": 5, "publish_timeout": 7}})
        self.publisher = FakePublisher()
        self.bus = FakeBus()
        self.deadletters = CountingDeadLetters()
        self.counters = Counters()
        self.ledger = DcLedger(os.path.join(self.settings.state_dir, "dc.sqlite"))
        self.consumer = JobConsumer(self.settings, self.publisher, FakeCache(), self.bus,
                                    Spool(self.settings.spool_dir, fsync=False), self.ledger, self.deadletters,
                                    self.counters, threading.Event(), threading.Event())
        self.per_category: Counter[str] = Counter()
        self.outcomes: dict[str, Counter[str]] = defaultdict(Counter)  # category -> outcome -> n
        self.rejected: Counter[str] = Counter()  # reason -> n (whole inputs)
        self.message_rejected: Counter[str] = Counter()  # reason -> n (messages inside accepted batches)
        self.crashes: dict[str, dict[str, Any]] = {}
        self.crash_count = 0
        self.hostile_publishes = 0
        self.hostile_accepted: list[dict[str, Any]] = []
        self.control_inputs = 0
        self.control_publishes = 0
        self.signed_struct_published = 0
        self.batch_violations: list[dict[str, Any]] = []
        self.batch_violation_count = 0
        self.findings: Counter[str] = Counter()
        self.finding_examples: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.accepted_messages = 0

    def crash(self, category: str, decoder: str, data: Any, err: BaseException) -> None:
        self.crash_count += 1
        self.outcomes[category]["CRASH"] += 1
        tb = traceback.extract_tb(err.__traceback__)
        last = tb[-1] if tb else None
        site = f"{decoder}: {type(err).__name__} at {os.path.basename(last.filename)}:{last.lineno}" if last else decoder
        entry = self.crashes.setdefault(site, {"count": 0, "exception": f"{type(err).__name__}: {err}"[:300],
                                               "traceback": "".join(traceback.format_exception(err))[-3000:],
                                               "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < CRASH_EXAMPLES:
            entry["examples"].append({"category": category, "input": repr(data)[:REPR_KEEP]})

    # -- jobs through JobConsumer.handle ----------------------------------------------------
    def job(self, i: int, category: str, fields: Any, doc: Any = None) -> None:
        before = len(self.publisher.calls)
        self.deadletters.last = None
        try:
            self.consumer.handle(f"{i}-0", fields)
        except Exception as err:  # noqa: BLE001 - anything but RejectedEntry (caught in handle) is a crash
            self.crash(category, "JobConsumer.handle/decode_job", fields, err)
            return
        published = len(self.publisher.calls) - before
        if self.deadletters.last is not None:
            outcome = f"rejected:{self.deadletters.last}"
            self.rejected[self.deadletters.last] += 1
        elif published:
            outcome = "published"
        else:
            outcome = "accepted_not_published"  # expired or duplicate: verified, not run
        self.outcomes[category][outcome] += 1
        if category == "control":
            self.control_publishes += published
        elif category in HOSTILE_JOB:
            self.hostile_publishes += published
            if self.deadletters.last is None:
                self.hostile_accepted.append({"category": category, "outcome": outcome, "input": repr(fields)[:REPR_KEEP]})
        elif category == "job_signed_struct" and published:
            self.signed_struct_published += published
            for problem in strict_job_problems(doc, self.trusted.key_id, time.time()):
                self.finding("job (trusted-signed)", problem, doc)

    # -- decoders called directly -------------------------------------------------------------
    def direct(self, category: str, name: str, fn: Callable[[Any], Any], data: Any) -> Any:
        try:
            out = fn(data)
        except RejectedEntry as rej:
            self.rejected[rej.reason] += 1
            self.outcomes[category][f"rejected:{rej.reason}"] += 1
            return None
        except Exception as err:  # noqa: BLE001
            self.crash(category, name, data, err)
            return None
        self.outcomes[category]["accepted"] += 1
        return out

    def batch(self, category: str, data: Any) -> None:
        out = self.direct(category, "decode_batch", lambda d: decode_batch(d, MAX_BYTES), data)
        if out is None:
            return
        self.accepted_messages += len(out.messages)
        for rej, _raw in out.rejected:
            self.message_rejected[rej.reason] += 1
        problems = []  # hard: what decode_batch promises
        for msg in out.messages:
            if msg.dc != out.dc:
                problems.append("message dc differs from batch dc")
            if isinstance(msg, Ack):
                if msg.status not in ACK_STATUSES or not all(isinstance(m, str) and STRICT_MINION.fullmatch(m)
                                                             for m in msg.minions + msg.missing):
                    problems.append("ack status/minions out of spec")
            elif isinstance(msg, Return):
                if not STRICT_MINION.fullmatch(msg.minion) or "return" not in msg.load:
                    problems.append("return id/load out of spec")
            else:
                problems.append(f"unexpected message type {type(msg).__name__}")
            if not STRICT_JID.fullmatch(msg.jid):  # soft: outside a strict (ASCII, full-match) reading
                self.finding("batch", f"accepted message jid {msg.jid!r}", data)
        if not STRICT_NAME.fullmatch(out.dc):
            self.finding("batch", f"accepted batch dc {out.dc!r}", data)
        if problems:
            self.batch_violation_count += 1
            if len(self.batch_violations) < 20:
                self.batch_violations.append({"problems": problems, "input": repr(data)[:REPR_KEEP]})

    def status(self, category: str, data: Any) -> None:
        out = self.direct(category, "decode_status", decode_status, data)
        if out is not None and not STRICT_NAME.fullmatch(out.dc):
            self.finding("status", f"accepted status dc {out.dc!r}", data)

    def finding(self, where: str, what: str, data: Any) -> None:
        """Accepted, but outside a strict reading of the format (reported, not a failure)."""
        key = f"{where}: " + re.sub(r"'.*'", "<value>", what) + f" ({_shape(what)})"
        self.findings[key] += 1
        if len(self.finding_examples[key]) < 3:
            self.finding_examples[key].append({"what": what, "input": repr(data)[:REPR_KEEP]})

    # -- one input ----------------------------------------------------------------------------
    def run_one(self, i: int, category: str) -> None:
        g = self.gen
        self.per_category[category] += 1
        if category == "control":
            self.control_inputs += 1
            self.job(i, category, g.signed_entry())
        elif category == "job_signed_struct":
            fields, doc = g.job_signed_struct()
            self.job(i, category, fields, doc)
        elif category.startswith("job_"):
            self.job(i, category, getattr(g, category)())
        elif category.startswith("batch_"):
            self.batch(category, getattr(g, category)())
        else:
            self.status(category, getattr(g, category)())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed, so a run can be replayed)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 32)

    import logging
    logging.getLogger("salt_redis_syndic").setLevel(logging.CRITICAL + 1)  # 1 error line per rejection otherwise

    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    names = [c for c, _ in CATEGORIES]
    weights = [w for _, w in CATEGORIES]
    with tempfile.TemporaryDirectory(prefix="fuzz_decoder-", dir=shm) as tmp:
        h = Harness(tmp, seed)
        pick = random.Random(seed ^ 0x5EED)
        begin = time.perf_counter()
        for i in range(args.inputs):
            category = "control" if i % 1000 == 999 else pick.choices(names, weights)[0]
            h.run_one(i, category)
        seconds = time.perf_counter() - begin
        h.ledger.close()

    hostile_total = sum(h.per_category[c] for c in HOSTILE_JOB)
    ok = (h.crash_count == 0 and h.hostile_publishes == 0 and not h.hostile_accepted and h.batch_violation_count == 0
          and h.control_inputs > 0 and h.control_publishes == h.control_inputs)
    data = {
        "what": "random and mutated inputs through decode_job (via JobConsumer.handle), decode_batch, decode_status",
        "seed": seed,
        "inputs": args.inputs,
        "seconds": round(seconds, 3),
        "inputs_per_second": round(args.inputs / seconds, 1) if seconds else None,
        "per_category": dict(sorted(h.per_category.items())),
        "outcomes": {c: dict(sorted(o.items())) for c, o in sorted(h.outcomes.items())},
        "rejected_by_reason": dict(h.rejected.most_common()),
        "batch_messages_accepted": h.accepted_messages,
        "batch_messages_rejected_by_reason": dict(h.message_rejected.most_common()),
        "crashes": h.crash_count,
        "crash_sites": h.crashes,
        "hostile_job_inputs": hostile_total,
        "hostile_publishes": h.hostile_publishes,
        "hostile_accepted": h.hostile_accepted[:20],
        "hostile_accepted_count": len(h.hostile_accepted),
        "control_inputs": h.control_inputs,
        "control_publishes": h.control_publishes,
        "signed_struct_published": h.signed_struct_published,
        "findings_outside_strict_format": dict(h.findings.most_common()),
        "finding_examples": dict(h.finding_examples),
        "batch_invariant_violations": h.batch_violation_count,
        "batch_invariant_examples": h.batch_violations,
        "deadletters_packed": h.deadletters.count,
        "deadletter_bytes": h.deadletters.bytes,
        "passed": ok,
    }
    path = write_result("fuzz_decoder", data)

    print(f"seed {seed}: {args.inputs} inputs in {seconds:.1f}s ({args.inputs / seconds:.0f} inputs/s)")
    print(f"{'category':<22} {'inputs':>7}  outcomes")
    for c in names + ["control"]:
        outs = ", ".join(f"{k.removeprefix('rejected:')}={v}" for k, v in h.outcomes[c].most_common())
        print(f"{c:<22} {h.per_category[c]:>7}  {outs}")
    print("rejected by reason:  " + ", ".join(f"{k}={v}" for k, v in h.rejected.most_common()))
    print("batch messages:      accepted=" + str(h.accepted_messages) + ", rejected " +
          ", ".join(f"{k}={v}" for k, v in h.message_rejected.most_common()))
    print(f"crashes:             {h.crash_count}" + "".join(f"\n  {n} x{e['count']}: {e['exception'][:120]}" for n, e in h.crashes.items()))
    print(f"hostile job inputs:  {hostile_total}, publishes {h.hostile_publishes}, accepted {len(h.hostile_accepted)}")
    print(f"control:             {h.control_publishes}/{h.control_inputs} published")
    print(f"trusted-signed hostile bodies published: {h.signed_struct_published}")
    print(f"batch invariant violations: {h.batch_violation_count}")
    print("accepted outside a strict (ASCII, full-match) format (not failures):"
          + ("".join(f"\n  {k}: {v}" for k, v in h.findings.most_common()) or " none"))
    print(f"{'PASS' if ok else 'FAIL'}; written: {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
