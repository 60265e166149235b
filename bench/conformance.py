"""Conformance: the same commands against a single master and against the MoM of the bridge.

A feature of the MoM works when the same command gives the same minions, return values and exit
code as ONE master holding the same minions (``Lab.direct``: same ids, grains and pillar).
Timings are never compared. Each case is one line of :data:`CASES`; ``tests/integration/
test_conformance.py`` runs every case as a test, and this module runs them from a shell::

    python -m bench.conformance [--case NAME ...]     # writes bench/results/conformance-*.json

Outputs are normalized before they are compared: jids become ``<jid>``, and per-run values
(durations, start times, pids) are dropped.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from lab import Lab, LabError, parse_json_documents, wait_until

DCS = ("east", "west")
MINIONS_PER_DC = 2
NODEGROUPS = {"webs": "G@role:web", "east_dbs": "G@dc:east and G@role:db"}

JID_RE = re.compile(r"\b\d{20}\b")
# Salt joins minion ids in arrival (or set) order in some comments ("... failed on minions: a, b")
MINION_LIST_RE = re.compile(r"\b[a-z]+-m\d+(?:, [a-z]+-m\d+)+\b")
VOLATILE_KEYS = frozenset({"duration", "start_time", "pid", "_stamp", "StartTime"})


@dataclass(frozen=True)
class Case:
    """One command line, run the same way on both masters.

    ``compare``: ``json`` (``--out=json``: minion -> return), ``text`` (the CLI's own output, lines
    sorted), ``count`` (only how many minions answered: the choice is random, e.g. ``--subset``).
    ``prepare``: a synchronous ``salt`` command run first; its jid replaces ``{jid}`` in ``argv``.
    ``background``: a ``salt --async`` command started first; its jid replaces ``{jid}``;
    ``settle``: seconds to wait after the case; a background job is killed after the case.
    ``mom_adds``: keys (at any depth) the MoM adds to the output, by design: taken out of the
    MoM's output before comparing, and required to be there (``why`` says what they are).
    ``known``: a difference that remains, with its reason; the MoM must give ``mom_gives``
    (exit code, output) and the single master something else, so the case fails when either changes.
    ``cli="salt-api"``: ``argv[0]`` is a JSON lowstate POSTed to ``rest_cherrypy`` (the exit code is
    the HTTP status); with ``lookup`` the reply names a jid, looked up at ``/jobs/<jid>`` once every
    minion of the reply returned; ``compare="batches"`` merges the per-batch dicts of the reply;
    ``pick``: only that key of each minion's return (the lab's user shown as ``<master user>``).
    ``markers``: a line the command makes minions append to ``markers.txt`` in their root (a reactor,
    a returner); the outcome counts it per minion once ``marked`` minions have it (plus a settle,
    so that a second run would show), and the single master must have ``marked`` minions marked.
    """

    name: str
    argv: tuple[str, ...]
    cli: str = "salt"
    compare: str = "json"
    prepare: tuple[str, ...] = ()
    background: tuple[str, ...] = ()
    delay: float = 0.0
    settle: float = 0.0
    timeout: float = 180.0
    mom_adds: tuple[str, ...] = ()
    why: str = ""
    known: str = ""
    mom_gives: tuple[int, Any] | None = None
    lookup: bool = False
    pick: str = ""
    markers: str = ""
    marked: int = 0


def case(name: str, *argv: str, **kwargs: Any) -> Case:
    return Case(name, tuple(argv), **kwargs)


SLEEP_PILLAR = 'pillar={"seconds": %d}'
REACTOR_TAG = "lab/mark"  # the conformance labs' reactor: lab/reactor/mark.sls (see lab.daemons)
MARK_SETTLE = 2.0


def low(client: str, **kwargs: Any) -> str:
    return json.dumps({"client": client, **kwargs})


CASES: list[Case] = [
    # targeting
    case("glob_all", "*", "test.ping"),
    case("glob_dc", "east-*", "test.ping"),
    case("list", "-L", "east-m1,west-m2", "test.ping"),
    case("list_missing", "-L", "east-m1,nosuch", "test.ping"),
    case("pcre", "-E", ".*-m1", "test.ping"),
    case("grain", "-G", "role:web", "test.ping"),
    case("grain_pcre", "-P", "dc:e.*", "test.ping"),
    case("pillar", "-I", "lab:dc:west", "test.ping"),
    case("compound", "-C", "G@role:db and west-*", "test.ping"),
    case("compound_not", "-C", "* and not G@dc:east", "test.ping"),
    case("nodegroup", "-N", "webs", "test.ping"),
    case("nodegroup_compound", "-N", "east_dbs", "test.ping"),
    case("no_match", "nomatch-*", "test.ping", compare="text", mom_gives=(0, []),
         known="with order_masters Salt's CLI never stops at an empty local match (a lower master may own "
               "the minions): the MoM exits 0 with no output, a single master 2 with 'No minions matched'"),
    # return values
    case("echo", "*", "test.echo", "hello"),
    case("arg_kwarg", "*", "test.arg", "1", "two", "k=v", mom_adds=("__pub_master_id",),
         why="the MoM's id, which a DC passes with every bridged job (as a syndic does): Salt's loop guard"),
    case("grains_item", "*", "grains.item", "dc", "role"),
    case("pillar_item", "*", "pillar.item", "lab"),
    case("retcode", "*", "test.retcode", "3"),
    case("false", "*", "test.false"),
    case("exception", "-L", "east-m1,west-m1", "test.exception", "boom"),
    case("cmd_exit", "*", "cmd.run", "exit 3"),
    case("retcode_passthrough", "--retcode-passthrough", "*", "cmd.run", "exit 3"),
    # job lengths: instant to 60 s, default timeout 5 and gather_job_timeout 10
    case("sleep_1", "*", "test.sleep", "1"),
    case("sleep_8", "*", "test.sleep", "8"),
    case("sleep_20", "*", "test.sleep", "20"),
    case("sleep_60", "*", "test.sleep", "60"),
    # states and orchestration-like requisites
    case("state_apply", "*", "state.apply", "lab"),
    case("state_failed", "*", "state.apply", "lab.fail"),
    case("state_long", "*", "state.apply", "lab.sleep", SLEEP_PILLAR % 25),
    # outputs
    case("out_txt", "*", "test.echo", "txt", "--out=txt", compare="text"),
    case("out_yaml", "*", "grains.item", "role", "--out=yaml", compare="text"),
    case("verbose", "-v", "*", "test.ping", compare="text"),
    # batches and subsets
    case("batch_2", "-b", "2", "*", "test.ping"),
    case("batch_50pct", "-b", "50%", "*", "test.echo", "b"),
    case("batch_wait", "-b", "2", "--batch-wait", "1", "*", "test.ping"),
    # which minion a batch of one picks first is the order the discovery pings came back: count them
    case("batch_failhard", "-b", "1", "--failhard", "*", "test.retcode", "1", compare="count"),
    case("static", "--static", "*", "test.ping"),
    case("subset", "--subset", "2", "*", "test.ping", compare="count"),
    # job control and the job cache
    case("find_job", "*", "saltutil.find_job", "{jid}", background=("*", "test.sleep", "120"), delay=2,
         mom_adds=("master_id",), why="the MoM's id, with which a DC published the job (Salt's loop guard)"),
    case("lookup_jid", "jobs.lookup_jid", "{jid}", cli="salt-run", prepare=("*", "test.echo", "looked-up")),
    case("list_job", "jobs.list_job", "{jid}", cli="salt-run", prepare=("*", "test.echo", "listed"),
         mom_adds=("Metadata",), why="Metadata.redis_syndic_dcs: the DC of every minion, kept in the MoM's job cache"),
    case("print_job", "jobs.print_job", "{jid}", cli="salt-run", prepare=("*", "test.echo", "printed"),
         mom_adds=("Metadata",), why="Metadata.redis_syndic_dcs: the DC of every minion, kept in the MoM's job cache"),
    case("manage_status", "manage.status", cli="salt-run"),
    case("manage_down", "manage.down", cli="salt-run"),
    # salt-api (rest_cherrypy, sharedsecret eauth)
    case("api_local", low("local", tgt="*", fun="test.echo", arg=["api"]), cli="salt-api"),
    case("api_local_user", low("local", tgt="east-m1,west-m1", tgt_type="list", fun="test.arg"),
         cli="salt-api", pick="__pub_user", mom_gives=(200, [{"east-m1": "<master user>", "west-m1": "<master user>"}]),
         known="a DC master publishes a bridged job as its own user (as for a syndic: Salt's LocalClient sends the "
               "user it runs as); the eauth user is in the MoM's job cache (jobs.list_job: User)"),
    case("api_local_async", low("local_async", tgt="*", fun="test.echo", arg=["async"]), cli="salt-api", lookup=True,
         mom_adds=("Metadata",), why="Metadata.redis_syndic_dcs: the DC of every minion, kept in the MoM's job cache"),
    case("api_async_grain", low("local_async", tgt="role:db", tgt_type="grain", fun="test.ping"), cli="salt-api",
         mom_gives=(200, [{"jid": "<jid>", "minions": []}]),
         known="the reply's minions come from the master's grains cache, which holds no DC minion on the MoM "
               "(Salt 3008 leaves out minions without cached grains); the job still runs on every matching DC minion"),
    case("api_local_batch", low("local_batch", tgt="*", fun="test.echo", arg=["batched"], batch="2"), cli="salt-api",
         compare="batches"),
    case("api_runner", low("runner", fun="manage.status"), cli="salt-api"),
    # orchestration, reactor, returners
    case("orchestrate", "state.orchestrate", "lab.orch", cli="salt-run"),
    case("reactor", "event.send", REACTOR_TAG, 'data={"tgt": "G@role:web", "marker": "reacted"}', cli="salt-run",
         markers="reacted", marked=2),
    case("returner", "*", "test.echo", "returned", "--return", "lab_mark", prepare=("*", "saltutil.sync_returners"),
         markers=json.dumps("returned"), marked=4),
]
CASES_BY_NAME = {c.name: c for c in CASES}


# ------------------------------------------------------------------------------------ outcome


@dataclass
class Outcome:
    """What one master gave: exit code and the normalized output (or a count of minions).

    ``seconds``: how long the case took there (shown, never compared).
    """

    rc: int
    output: Any
    raw: str = field(default="", repr=False)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"rc": self.rc, "output": self.output, "seconds": round(self.seconds, 1)}


def _text(value: str, root: str) -> str:
    value = JID_RE.sub("<jid>", value.replace(root, "<root>") if root else value)
    return MINION_LIST_RE.sub(lambda m: ", ".join(sorted(m.group(0).split(", "))), value)


def normalize(value: Any, root: str = "") -> Any:
    """Per-run values out, jids and the lab's root directory replaced: what must be equal on both masters."""
    if isinstance(value, dict):
        return {_text(str(k), root): normalize(v, root) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [normalize(v, root) for v in value]
    if isinstance(value, str):
        return _text(value, root)
    return value


def normalize_text(text: str, root: str = "") -> list[str]:
    """The CLI's text, jids and root replaced, lines sorted (minions print in arrival order)."""
    return sorted(_text(line.rstrip(), root) for line in text.splitlines() if line.strip())


def without(value: Any, keys: tuple[str, ...]) -> tuple[Any, int]:
    """``value`` without ``keys`` at any depth, and how many were taken out."""
    if isinstance(value, dict):
        taken, out = 0, {}
        for k, v in value.items():
            if k in keys:
                taken += 1
                continue
            out[k], n = without(v, keys)
            taken += n
        return out, taken
    if isinstance(value, list):
        pairs = [without(v, keys) for v in value]
        return [v for v, _ in pairs], sum(n for _, n in pairs)
    return value, 0


def found(value: Any, key: str) -> Any:
    """The value of ``key`` at any depth of ``value`` (first found), or None."""
    if isinstance(value, dict):
        if key in value:
            return value[key]
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            hit = found(item, key)
            if hit is not None:
                return hit
    return None


def _jid_of(text: str) -> str:
    match = JID_RE.search(text)
    if match is None:
        raise LabError(f"no jid in:\n{text}")
    return match.group(0)


def run_case(lab: Lab, c: Case) -> Outcome:
    """Run ``c`` against the lab's top master (the MoM, or the single master)."""
    begin = time.monotonic()
    outcome = run_api(lab, c) if c.cli == "salt-api" else run_cli(lab, c)
    outcome.seconds = time.monotonic() - begin
    if c.markers:
        outcome.output = {"cli": outcome.output, "markers": count_markers(lab, c)}
    if c.settle:
        time.sleep(c.settle)
    return outcome


def run_cli(lab: Lab, c: Case) -> Outcome:
    """``salt`` or ``salt-run`` with ``c.argv`` on the top master."""
    argv = list(c.argv)
    if c.prepare:
        jid = _jid_of(lab.salt("--show-jid", "--out=json", *c.prepare, timeout=c.timeout).stdout)
        argv = [a.replace("{jid}", jid) for a in argv]
    if c.background:
        jid = lab.salt_async(*c.background)
        argv = [a.replace("{jid}", jid) for a in argv]
    if c.delay:
        time.sleep(c.delay)
    if c.compare == "json" or c.compare == "count":
        argv.append("--out=json")
    run = lab.salt_run if c.cli == "salt-run" else lab.salt
    result = run(*argv, timeout=c.timeout)
    text = result.stdout + result.stderr
    root = str(lab.root)
    if c.compare == "text":
        output: Any = normalize_text(result.stdout, root)
    else:
        docs = parse_json_documents(result.stdout) if "{" in result.stdout else {}
        output = len(docs) if c.compare == "count" else normalize(docs, root)
    if c.background:  # the next case must not see it running
        lab.salt("*", "saltutil.kill_job", jid, timeout=c.timeout)
    return Outcome(result.returncode, output, raw=text)


def run_api(lab: Lab, c: Case) -> Outcome:
    """POST the lowstate ``c.argv[0]`` to the top master's salt-api; the HTTP status is the exit code."""
    api = lab.salt_api()
    reply = api.run(json.loads(c.argv[0]))
    raw = json.dumps(reply.body)
    if reply.status != 200 or not isinstance(reply.body, dict):
        return Outcome(reply.status, normalize(reply.body, str(lab.root)), raw=raw)
    output: Any = reply.body["return"]
    if c.pick:
        picked = [{m: found(r, c.pick) for m, r in part.items()} for part in output]
        output = [{m: "<master user>" if v == lab.user else v for m, v in part.items()} for part in picked]
    if c.compare == "batches":  # one dict per minion (or per batch), in arrival order
        merged = {k: v for part in output for k, v in part.items()}
        output = {"entries": len(output), "returns": merged}
    if c.lookup:
        started = output[0]
        minions = set(started["minions"])

        def done() -> Any:
            job = api.job(started["jid"])
            returned = job.body["return"][0] if job.status == 200 and isinstance(job.body, dict) else {}
            return job if minions <= set(returned) else None

        try:
            job = wait_until(done, c.timeout, f"the returns of {started['jid']} at /jobs")
        except LabError as err:  # what the job holds after the wait is the outcome
            job = api.job(started["jid"])
            raw += f"\n{err}"
        output = {"minions": sorted(minions), "job_status": job.status, "job": job.body}
        raw += "\n" + json.dumps(job.body)
    return Outcome(reply.status, normalize(output, str(lab.root)), raw=raw)


def count_markers(lab: Lab, c: Case) -> dict[str, int]:
    """How many times each minion appended ``c.markers`` to its markers.txt, once ``c.marked`` did."""

    def counts() -> dict[str, int]:
        out = {}
        for minion in lab.minion_ids:
            path = lab.minion_file(minion, "markers.txt")
            lines = path.read_text().splitlines() if path.exists() else []
            out[minion] = sum(1 for line in lines if line.strip() == c.markers)
        return out

    deadline = time.monotonic() + c.timeout
    while sum(1 for n in counts().values() if n) < c.marked and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(MARK_SETTLE)  # a second run on any minion would show now
    return counts()


def verdict(c: Case, single: Outcome, mom: Outcome) -> tuple[str, list[str]]:
    """``(result for the table, problems)``: no problem means the case holds as documented."""
    if c.known:
        if (mom.rc, mom.output) != c.mom_gives:
            return "changed", [f"known difference changed: MoM gave {(mom.rc, mom.output)}, expected {c.mom_gives}"]
        if (single.rc, single.output) == (mom.rc, mom.output):
            return "changed", ["the known difference is gone: update the case and docs/using-the-mom.md"]
        return f"known difference: {c.known}", []
    if c.markers:
        marked = sum(1 for n in single.output["markers"].values() if n)
        if marked != c.marked:
            return "broken case", [f"the single master marked {marked} minion(s), the case expects {c.marked}"]
    if c.mom_adds:
        stripped, taken = without(mom.output, c.mom_adds)
        if not taken:
            return "changed", [f"the MoM no longer adds {', '.join(c.mom_adds)}: update the case"]
        mom = Outcome(mom.rc, stripped, mom.raw, mom.seconds)
    diff = differences(single, mom)
    if diff:
        return diff[0], diff
    return ("same" if not c.mom_adds else f"same; the MoM adds {', '.join(c.mom_adds)} ({c.why})"), []


def differences(single: Outcome, mom: Outcome) -> list[str]:
    out = []
    if single.rc != mom.rc:
        out.append(f"exit code: single master {single.rc}, MoM {mom.rc}")
    if single.output != mom.output:
        if isinstance(single.output, dict) and isinstance(mom.output, dict):
            missing = sorted(set(single.output) - set(mom.output))
            extra = sorted(set(mom.output) - set(single.output))
            if missing:
                out.append(f"minions only on the single master: {missing}")
            if extra:
                out.append(f"minions only on the MoM: {extra}")
            for minion in sorted(set(single.output) & set(mom.output)):
                if single.output[minion] != mom.output[minion]:
                    out.append(f"{minion}: single master {json.dumps(single.output[minion], sort_keys=True)[:300]}"
                               f" != MoM {json.dumps(mom.output[minion], sort_keys=True)[:300]}")
        else:
            out.append(f"output: single master {json.dumps(single.output)[:600]} != MoM {json.dumps(mom.output)[:600]}")
    return out


def run_both(single: Lab, mom: Lab, c: Case) -> tuple[Outcome, Outcome]:
    """Run ``c`` on both labs at the same time (they share nothing but the host)."""
    results: dict[str, Outcome | BaseException] = {}

    def go(name: str, lab: Lab) -> None:
        try:
            results[name] = run_case(lab, c)
        except BaseException as err:  # reported by the caller, with the other side's outcome
            results[name] = err

    threads = [threading.Thread(target=go, args=(name, lab)) for name, lab in (("single", single), ("mom", mom))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ("single", "mom"):
        if isinstance(results[name], BaseException):
            raise results[name]  # type: ignore[misc]
    return results["single"], results["mom"]  # type: ignore[return-value]


# ------------------------------------------------------------------------------------- labs


def make_labs(minions_per_dc: int = MINIONS_PER_DC) -> tuple[Lab, Lab]:
    """An unstarted single master and an unstarted bridge, same minions, nodegroups on the top master."""
    # the same master id on both: an orchestration's output is keyed by it
    opts = {"nodegroups": NODEGROUPS, "reactor": [{REACTOR_TAG: ["salt://lab/reactor/mark.sls"]}]}
    single = Lab.direct(DCS, minions_per_dc, api=True, dc_opts={**opts, "id": "mom"})
    mom = Lab(DCS, minions_per_dc, api=True, mom_opts=opts)
    return single, mom


@contextmanager
def started_labs(minions_per_dc: int = MINIONS_PER_DC) -> Iterator[tuple[Lab, Lab]]:
    single, mom = make_labs(minions_per_dc)
    with ExitStack() as stack:
        errors: list[BaseException] = []

        def start(lab: Lab) -> None:
            try:
                lab.start()
            except BaseException as err:
                errors.append(err)

        stack.callback(mom.stop)
        stack.callback(single.stop)
        threads = [threading.Thread(target=start, args=(lab,)) for lab in (single, mom)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        mom.wait_bridge(timeout=120)
        yield single, mom


HEADER = f"{'case':<22} {'single rc':>9} {'MoM rc':>6} {'single s':>8} {'MoM s':>6}  result"


def table_line(name: str, single: dict[str, Any], mom: dict[str, Any], result: str) -> str:
    """``single`` and ``mom``: ``Outcome.as_dict()``."""
    return (f"{name:<22} {single['rc']:>9} {mom['rc']:>6} {single['seconds']:>8.1f} {mom['seconds']:>6.1f}  "
            f"{result[:110]}")


def table(rows: Sequence[dict[str, Any]]) -> str:
    """One line per case: name, exit codes, seconds, equal or not, and the first difference."""
    lines = [HEADER]
    for row in rows:
        shown = row["result"] if not row["differences"] else "DIFFERENT: " + row["differences"][0][:80]
        lines.append(table_line(row["case"], row["single"], row["mom"], shown))
    held = [r for r in rows if not r["differences"]]
    known = sum(1 for r in held if r["result"].startswith("known difference"))
    lines.append(f"{len(held) - known} of {len(rows)} cases the same as a single master, {known} known difference(s), "
                 f"{len(rows) - len(held)} failing")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, write: Callable[[str, dict[str, Any]], Any] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.conformance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", choices=sorted(CASES_BY_NAME), help="run only these cases")
    parser.add_argument("--minions", type=int, default=MINIONS_PER_DC, help="minions per DC (default %(default)s)")
    args = parser.parse_args(argv)
    from .common import exit_on_sigterm, write_result

    exit_on_sigterm()
    cases = [CASES_BY_NAME[n] for n in args.case] if args.case else CASES
    rows = []
    with started_labs(args.minions) as (single, mom):
        for c in cases:
            s, m = run_both(single, mom, c)
            result, problems = verdict(c, s, m)
            rows.append({"case": c.name, "argv": [c.cli, *c.argv], "single": s.as_dict(), "mom": m.as_dict(),
                         "result": result, "differences": problems})
            print(f"{c.name}: {result}", flush=True)
    print(table(rows))
    path = (write or write_result)("conformance", {"dcs": list(DCS), "minions_per_dc": args.minions, "cases": rows})
    print(f"written {path}")
    return 0 if all(not r["differences"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
