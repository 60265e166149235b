"""A throwaway lab of real Salt and Redis daemons on loopback, for tests, demos and benchmarks.

Why real daemons: the bridge lives inside ``salt-master`` processes (an engine and an
EventReturn returner) and its failure modes are about processes, sockets and timing. Mocks
cannot show a lost return, a hung request channel or a job run twice; a lab of real processes
on one host can.

Topology (default)::

    redis-server 127.0.0.1:<free port>
    mom   salt-master 127.0.B.1:4505/4506   order_masters, engine redis_syndic (role mom)
    east  salt-master 127.0.B.2:4505/4506   engine redis_syndic (role dc), event_return
    west  salt-master 127.0.B.3:4505/4506   idem
    east-m1, east-m2 -> east;  west-m1, west-m2 -> west

Every master keeps the DEFAULT ports on its own loopback address, the only arrangement in
which several masters (and salt-syndic, which assumes the MoM's ports) behave on one host.
``B`` is drawn at random per lab and reserved with a lock file, so several labs can coexist.

Every daemon gets its own directory under a short lab root (unix socket paths are limited to
~107 bytes), with every path option set explicitly so nothing leaks into /etc, /var or into
another daemon's state. The lab never installs anything: the bridge's Salt modules are found
through the installed package's ``salt.loader`` entry point.

Use it as a context manager (or ``start()`` / ``stop()``); ``stop()`` is idempotent and is
also registered with :mod:`atexit`. ``python -m lab demo|up`` drives it
from a shell.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import copy
import fcntl
import getpass
import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

import yaml

from .api import API_PORT, SaltApi, api_opts
from .netproxy import Proxy

log = logging.getLogger(__name__)

PUBLISH_PORT = 4505
RET_PORT = 4506
DEFAULT_DCS: tuple[str, ...] = ("east", "west")
MOM = "mom"
DIRECT = "master"

# A per-role override: a mapping applied to every DC, or a callable ``dc_name -> mapping``.
Override = Mapping[str, Any] | Callable[[str], Mapping[str, Any]] | None


class LabError(RuntimeError):
    """The lab could not be built, a daemon died, or a readiness wait timed out.

    The message carries the tail of the relevant log, because the one thing a failing CI run
    needs is the daemon's own last words.
    """


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def find_script(name: str) -> str:
    """Locate a Salt/Redis executable, preferring the one beside the running interpreter.

    The Salt scripts must belong to the same Python environment as this package (the one
    that has the bridge installed), which is not necessarily the first one on ``PATH``.
    """
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    if found:
        return found
    raise LabError(f"executable {name!r} not found next to {sys.executable} nor on PATH")


def tail(path: Path | str, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``; nested dicts merge, a ``None`` value deletes.

    Deleting with ``None`` lets a test remove a default (say ``signing_key``) to build a
    deliberately broken topology without re-stating the rest.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in (override or {}).items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _resolve(override: Override, name: str) -> Mapping[str, Any] | None:
    return override(name) if callable(override) else override


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a free port. Racy by nature; callers retry on bind failure."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """True if ``host:port`` can be bound now (with SO_REUSEADDR, as ZeroMQ binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def tcp_accepting(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a TCP connect to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class LabTimeout(LabError):
    """A readiness wait ran out of time (as opposed to a daemon dying)."""


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2
) -> Any:
    """Poll ``predicate`` until it returns something true, and return that.

    Raises :class:`LabTimeout` naming ``what`` (and the last value seen) on timeout.
    ``predicate`` may itself raise :class:`LabError` to abort early (a daemon died).
    """
    deadline = time.monotonic() + timeout
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise LabTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last value: {last!r:.500}")
        time.sleep(interval)


def generate_ed25519_keypair(private_path: Path, public_path: Path) -> None:
    """Write an Ed25519 key pair: PKCS8 unencrypted private PEM (0600), SPKI public PEM.

    The lab plays the operator who provisions the MoM's signing key before the masters start.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    os.chmod(private_path, 0o600)
    public_path.write_bytes(public_pem)


def _cmdline_mentions(proc: Any, needle: str) -> bool:
    """True if a psutil process's command line contains ``needle`` as a path prefix.

    Salt rewrites its process titles (setproctitle) into one space-separated string, so the
    check works on the joined text rather than on argv elements.
    """
    try:
        text = " ".join(proc.cmdline())
    except Exception:  # noqa: BLE001 - psutil raises several types for vanished processes
        return False
    return any(tok == needle or tok.startswith(needle + os.sep) for tok in text.split())


def lab_processes(needle: str) -> list[Any]:
    """psutil processes whose command line mentions the path ``needle`` (self excluded)."""
    import psutil

    me = os.getpid()
    return [p for p in psutil.process_iter() if p.pid != me and _cmdline_mentions(p, needle)]


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().split(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return False


# --------------------------------------------------------------------------------------------
# process specs
# --------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class DaemonSpec:
    """One long-running process of the lab: how to start it and where it leaves traces.

    ``root`` is the daemon's private directory; every file it writes lives under it, which is
    also how stray processes are recognised (their command line names ``conf_dir``).
    """

    name: str
    root: Path
    log_file: Path
    pidfile: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    group_killed: bool = field(default=False, repr=False)

    @property
    def conf_dir(self) -> Path:
        return self.root / "conf"

    @property
    def stdout_file(self) -> Path:
        return self.root / "stdout.log"

    def argv(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        """Start the daemon in the foreground in its own session (own process group).

        Its own session means one ``killpg`` reaches every child it forks (MWorkers, job
        processes), and a Ctrl-C in the lab's terminal does not hit the daemons directly.
        """
        if self.running():
            raise LabError(f"{self.name} is already running (pid {self.pid})")
        self.root.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
        out = open(self.stdout_file, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            out.close()
        self.group_killed = False
        log.debug("started %s pid %s: %s", self.name, self.process.pid, " ".join(self.argv()))

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the daemon's whole process group."""
        if self.running():
            assert self.process is not None
            _signal_group(self.process.pid, sig)

    def describe_failure(self, why: str, lines: int = 40) -> str:
        """A message for :class:`LabError`: what went wrong plus the daemon's last log lines."""
        parts = [f"{self.name}: {why}"]
        if self.process is not None and self.process.poll() is not None:
            parts.append(f"(exited with {self.process.returncode})")
        text = " ".join(parts)
        for path in (self.log_file, self.stdout_file):
            chunk = tail(path, lines)
            if chunk:
                text += f"\n--- tail of {path} ---\n{chunk}"
        return text


@dataclass(kw_only=True)
class RedisSpec(DaemonSpec):
    """The lab's private redis-server (never the machine's shared one)."""

    port: int
    appendonly: bool = False
    extra_args: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        return [
            find_script("redis-server"),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.root),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--daemonize", "no",
            "--logfile", str(self.log_file),
            "--pidfile", str(self.pidfile),
            *self.extra_args,
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self, timeout: float = 0.5) -> bool:
        """Raw-socket PING (no redis-py needed); False while loading or unreachable."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


@dataclass(kw_only=True)
class MasterSpec(DaemonSpec):
    """A salt-master bound to its own loopback address with the default ports."""

    address: str
    role: str  # "mom", "dc" or "direct"
    dc: str | None = None
    minion_ids: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def sock_dir(self) -> Path:
        return self.root / "sock"

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    @property
    def cachedir(self) -> Path:
        return self.root / "cache"

    def argv(self) -> list[str]:
        return [find_script("salt-master"), "-c", str(self.conf_dir)]

    def is_ready(self) -> bool:
        """Ret port accepting and both IPC sockets present: what the salt CLI needs."""
        return (
            tcp_accepting(self.address, RET_PORT)
            and (self.sock_dir / "publish_pull.ipc").exists()
            and (self.sock_dir / "master_event_pub.ipc").exists()
        )

    def clear_runtime_files(self) -> None:
        """Drop sockets a killed master left behind, so readiness checks mean something."""
        if self.sock_dir.is_dir():
            for path in self.sock_dir.glob("*.ipc"):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()


@dataclass(kw_only=True)
class MinionSpec(DaemonSpec):
    """A salt-minion attached to one master."""

    minion_id: str
    master: str  # lab name of its master
    dc: str
    config: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def cachedir(self) -> Path:
        return self.root / "cache"

    def argv(self) -> list[str]:
        return [find_script("salt-minion"), "-c", str(self.conf_dir)]


@dataclass(kw_only=True)
class ApiSpec(DaemonSpec):
    """``salt-api`` beside a master, reading that master's config (``rest_cherrypy``, see lab/api.py)."""

    master_conf: Path
    address: str

    @property
    def conf_dir(self) -> Path:
        return self.master_conf

    def argv(self) -> list[str]:
        return [find_script("salt-api"), "-c", str(self.master_conf)]

    def is_ready(self) -> bool:
        return tcp_accepting(self.address, API_PORT)


# --------------------------------------------------------------------------------------------
# process control shared by the lab and the test fixtures
# --------------------------------------------------------------------------------------------


def terminate(
    specs: Iterable[DaemonSpec],
    grace: float | Callable[[DaemonSpec], float],
    sig: int = signal.SIGTERM,
) -> None:
    """Send ``sig`` to each daemon's group, wait up to ``grace`` s, then SIGKILL and reap.

    All daemons are signalled first and waited on against one clock, so a teardown costs the
    slowest daemon, not the sum. ``grace`` may depend on the daemon. Children may outlive
    their leader, so the group is SIGKILLed after the leader exits in every case, and a pid
    left in the pidfile (a daemon that re-exec'd or moved) is killed too.
    """
    # A group already killed once is skipped: its pgid may since belong to someone else.
    specs = [s for s in specs if s.process is not None and not s.group_killed]
    begin = time.monotonic()
    for spec in specs:
        spec.signal(sig)
        spec.signal(signal.SIGCONT)  # a paused (SIGSTOP) daemon cannot act on SIGTERM
    for spec in specs:
        assert spec.process is not None
        limit = grace(spec) if callable(grace) else grace
        try:
            spec.process.wait(timeout=max(0.0, begin + limit - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.info("%s still up %.0fs after signal %d; killing", spec.name, limit, sig)
        _signal_group(spec.process.pid, signal.SIGKILL)
        spec.group_killed = True
        with contextlib.suppress(subprocess.TimeoutExpired):
            spec.process.wait(timeout=5)
        _kill_pidfile(spec)


def _kill_pidfile(spec: DaemonSpec) -> None:
    with contextlib.suppress(OSError, ValueError):
        pid = int(spec.pidfile.read_text().strip())
        if pid > 1 and pid != os.getpid() and _pid_alive(pid):
            import psutil

            proc = psutil.Process(pid)
            # A stale pidfile may name a recycled pid: kill only what is provably ours.
            if isinstance(spec, RedisSpec):
                ours = f"127.0.0.1:{spec.port}" in " ".join(proc.cmdline())
            else:
                ours = _cmdline_mentions(proc, str(spec.root))
            if ours:
                proc.kill()


def start_redis_spec(spec: RedisSpec, may_move_port: bool = False, timeout: float = 30) -> None:
    """Start redis-server and wait for PONG.

    ``may_move_port``: if the port was taken between picking and binding (nothing depends on
    it yet), pick another and retry; a restart must keep its port, so it never moves it.
    """
    for attempt in range(3):
        spec.spawn()

        def ready() -> bool:
            if not spec.running():
                raise LabError(f"{spec.name} exited")
            return spec.ping()

        try:
            wait_until(ready, timeout, f"redis on port {spec.port}")
            return
        except LabError as exc:
            port_taken = not spec.running() and "Address already in use" in tail(spec.log_file)
            if not (may_move_port and port_taken and attempt < 2):
                terminate([spec], 0, signal.SIGKILL)
                raise LabError(spec.describe_failure(str(exc))) from None
            log.info("redis port %s taken, picking another", spec.port)
            spec.port = free_tcp_port()


class RedisServer:
    """A private redis-server on a free loopback port, for tests and tools.

    Never the machine's shared Redis: it has its own dir, port and process group, so tests
    may stop, kill or pause it freely. ``start()`` after ``stop()``/``kill()`` reuses the same
    port and dir (AOF data survives when ``appendonly``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        port: int | None = None,
        appendonly: bool = False,
        extra_args: Sequence[str] = (),
        stop_grace: float = 5.0,
    ) -> None:
        root = Path(directory)
        self._port_fixed = port is not None
        self._started_once = False
        self.stop_grace = stop_grace
        self.spec = RedisSpec(
            name="redis",
            root=root,
            log_file=root / "redis.log",
            pidfile=root / "redis.pid",
            port=port if port is not None else free_tcp_port(),
            appendonly=appendonly,
            extra_args=tuple(extra_args),
        )

    def __repr__(self) -> str:
        state = "running" if self.running() else "stopped"
        return f"<RedisServer {self.url} {state} dir={self.spec.root}>"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self.spec.port

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def pid(self) -> int | None:
        return self.spec.pid

    def running(self) -> bool:
        return self.spec.running()

    def start(self) -> Self:
        """Start (or restart) and wait until it answers PING."""
        move = not self._port_fixed and not self._started_once
        start_redis_spec(self.spec, may_move_port=move)
        self._started_once = True
        return self

    def stop(self) -> None:
        """SHUTDOWN-like stop: SIGTERM (redis writes its AOF), SIGKILL after the grace."""
        terminate([self.spec], self.stop_grace)

    def kill(self) -> None:
        """SIGKILL: acknowledged but unpersisted writes are lost, as in a crash."""
        terminate([self.spec], 0, signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP: sockets stay open and nothing answers (a hung server)."""
        self.spec.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.spec.signal(signal.SIGCONT)

    def client(self, **kwargs: Any) -> Any:
        """A redis-py client for this server (keyword arguments go to ``Redis.from_url``)."""
        import redis as redis_py

        return redis_py.Redis.from_url(self.url, **kwargs)


# --------------------------------------------------------------------------------------------
# file trees written onto the masters
# --------------------------------------------------------------------------------------------

LAB_INIT_SLS = """\
# Written by lab: proves a state ran on the right minion with its own
# grains and pillar (and a per-run marker: state.apply lab pillar='{"lab_marker": "..."}').
# The path is inside the minion's private root dir.
lab_state:
  file.managed:
    - name: {{ opts['root_dir'] }}/lab_state.txt
    - contents: |
        id={{ grains['id'] }}
        dc={{ grains.get('dc') }}
        role={{ grains.get('role') }}
        pillar_dc={{ salt['pillar.get']('lab:dc') }}
        marker={{ salt['pillar.get']('lab_marker', '') }}
"""

LAB_JID_SLS = """\
# Written by lab: appends the running job's jid to jids.txt in the minion
# root, one line per execution, so tests can count exactly-once delivery. Jinja cannot see
# the jid, so a helper finds the proc file of its ancestor job process.
lab_jid_helper:
  file.managed:
    - name: {{ opts['root_dir'] }}/lab_jid.py
    - source: salt://lab/files/lab_jid.py

lab_jid:
  cmd.run:
    - name: >-
        {{ grains['pythonexecutable'] }} {{ opts['root_dir'] }}/lab_jid.py
        {{ opts['cachedir'] }}/proc {{ opts['root_dir'] }}/jids.txt
    - require:
      - file: lab_jid_helper
"""

LAB_SLEEP_SLS = """\
# Written by lab: a state that runs for pillar 'seconds' (default 20) and then succeeds.
lab_sleep:
  cmd.run:
    - name: sleep {{ salt['pillar.get']('seconds', 20) }}
"""

LAB_FAIL_SLS = """\
# Written by lab: one state that succeeds, one that fails, one that requires the failed one.
lab_fail_ok:
  test.succeed_without_changes: []

lab_fail_bad:
  test.fail_without_changes: []

lab_fail_after:
  test.succeed_without_changes:
    - require:
      - test: lab_fail_bad
"""

LAB_ORCH_SLS = """\
# Written by lab: an orchestration (salt-run state.orchestrate lab.orch) whose steps target the
# minions of every DC: a state that takes a few seconds, a function whose failures fail_minions
# tolerates, one whose failure it does not, and a step that requires the failed one.
orch_state:
  salt.state:
    - tgt: '*'
    - sls: lab.sleep
    - pillar: {seconds: 3}

orch_tolerated:
  salt.function:
    - name: match.glob
    - tgt: '*'
    - arg: ['east-*']
    - fail_minions: [west-m1, west-m2]
    - require:
      - salt: orch_state

orch_failed:
  salt.function:
    - name: match.glob
    - tgt: '*'
    - arg: ['east-*']
    - fail_minions: [west-m1]

orch_after_failed:
  salt.function:
    - name: test.ping
    - tgt: '*'
    - require:
      - salt: orch_failed
"""

LAB_REACTOR_SLS = """\
# Written by lab: the reactor of tag lab/mark (salt-run event.send lab/mark data='{tgt, marker}').
# Each targeted minion appends the marker to markers.txt in its own root (cmd.run's template
# renders the path on the minion).
lab_reactor_mark:
  local.cmd.run:
    - tgt: '{{ data['tgt'] }}'
    - tgt_type: compound
    - args:
      - cmd: echo {{ data['marker'] }} >> {% raw %}{{ opts['root_dir'] }}{% endraw %}/markers.txt
      - template: jinja
      - python_shell: true
"""

LAB_MARK_RETURNER = '''\
"""Lab returner (salt --return lab_mark): appends the return to markers.txt in the minion's root."""
import json
import os

__virtualname__ = "lab_mark"


def __virtual__():
    return __virtualname__


def returner(ret):
    with open(os.path.join(__opts__["root_dir"], "markers.txt"), "a") as fh:
        fh.write(json.dumps(ret.get("return")) + "\\n")
'''

LAB_JID_HELPER = '''\
"""Append the jid of the Salt job this process runs under to a file (lab helper)."""
import os
import sys

import psutil
import salt.payload

proc_dir, out = sys.argv[1], sys.argv[2]
ancestors = {p.pid for p in psutil.Process().parents()}
for name in sorted(os.listdir(proc_dir)):
    try:
        with open(os.path.join(proc_dir, name), "rb") as fh:
            data = salt.payload.loads(fh.read())
    except Exception:
        continue
    if isinstance(data, dict) and data.get("pid") in ancestors:
        with open(out, "a") as fh:
            fh.write(str(data["jid"]) + "\\n")
        print(data["jid"])
        sys.exit(0)
sys.exit("lab_jid: no proc file of an ancestor process in " + proc_dir)
'''


def write_state_tree(base: Path) -> None:
    """The state tree every master serves (identical on the MoM and each DC)."""
    (base / "lab" / "files").mkdir(parents=True, exist_ok=True)
    (base / "top.sls").write_text("base:\n  '*': []\n")
    (base / "lab" / "init.sls").write_text(LAB_INIT_SLS)
    (base / "lab" / "jid.sls").write_text(LAB_JID_SLS)
    (base / "lab" / "sleep.sls").write_text(LAB_SLEEP_SLS)
    (base / "lab" / "fail.sls").write_text(LAB_FAIL_SLS)
    (base / "lab" / "files" / "lab_jid.py").write_text(LAB_JID_HELPER)
    (base / "lab" / "orch.sls").write_text(LAB_ORCH_SLS)
    (base / "lab" / "reactor").mkdir(exist_ok=True)
    (base / "lab" / "reactor" / "mark.sls").write_text(LAB_REACTOR_SLS)
    (base / "_returners").mkdir(exist_ok=True)
    (base / "_returners" / "lab_mark.py").write_text(LAB_MARK_RETURNER)


def write_pillar_tree(base: Path, dc: str | None) -> None:
    """Pillar giving each minion ``lab: {dc: <name>}``; from grains on a direct master."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "top.sls").write_text("base:\n  '*':\n    - lab\n")
    value = dc if dc is not None else "{{ grains.get('dc') }}"
    (base / "lab.sls").write_text(f"lab:\n  dc: {value}\n")


# --------------------------------------------------------------------------------------------
# the lab
# --------------------------------------------------------------------------------------------

_LIVE_LABS: weakref.WeakSet[Lab] = weakref.WeakSet()


@atexit.register
def _stop_live_labs() -> None:
    for lab in list(_LIVE_LABS):
        with contextlib.suppress(Exception):
            lab.stop()


class Lab:
    """A MoM, N DC masters, M minions per DC and a Redis, all real processes on loopback.

    Construction only plans; :meth:`start` builds the file trees, generates keys and starts
    the daemons in order (redis, MoM, DC masters, minions), waiting for each tier. Pass
    ``direct=True`` (or use :meth:`direct`) for the baseline: one master, all minions on it.

    Overrides (deep-merged; a ``None`` value deletes a key):

    - ``mom_bridge`` / ``dc_bridge``: into the ``redis_syndic:`` block of the MoM / each DC
      (``dc_bridge`` may be a callable ``dc_name -> mapping``);
    - ``mom_opts`` / ``dc_opts`` / ``minion_opts``: into the whole daemon config
      (``dc_opts`` and ``minion_opts`` may be callables of the DC name).

    ``dc_links=True`` puts a :class:`~lab.netproxy.Proxy` (run by this process)
    between each DC master and Redis, so a test can cut, blackhole or slow one DC's WAN link:
    ``lab.link("east").blackhole()``. The MoM always talks to Redis directly.
    """

    def __init__(
        self,
        dcs: Sequence[str] = DEFAULT_DCS,
        minions_per_dc: int = 2,
        *,
        bridge: bool = True,
        direct: bool = False,
        redis: bool | None = None,
        redis_appendonly: bool = False,
        redis_args: Sequence[str] = (),
        mom_bridge: Mapping[str, Any] | None = None,
        dc_bridge: Override = None,
        mom_opts: Mapping[str, Any] | None = None,
        dc_opts: Override = None,
        minion_opts: Override = None,
        timeout: int = 5,
        syndic_wait: int = 0,
        log_level_logfile: str = "debug",
        ready_timeout: float = 120.0,
        stop_grace: float = 10.0,
        minion_grace: float = 2.0,
        root: str | os.PathLike[str] | None = None,
        keep_root: bool = False,
        dc_links: bool = False,
        api: bool = False,
        extra_moms: Sequence[str] = (),
        sub_dcs: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if not dcs:
            raise ValueError("a lab needs at least one DC")
        self.extra_moms: tuple[str, ...] = tuple(extra_moms)
        self.sub_dcs: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in (sub_dcs or {}).items()}
        names = [*dcs, *self.extra_moms, *(b for sub in self.sub_dcs.values() for b in sub)]
        if len(set(names)) != len(names) or MOM in names or DIRECT in names or not set(self.sub_dcs) <= set(dcs):
            raise ValueError(f"DC names must be unique and not {MOM!r}/{DIRECT!r}: {dcs!r}")
        self.dcs: tuple[str, ...] = tuple(dcs)
        self.minions_per_dc = minions_per_dc
        self.bridge = bridge and not direct
        self.is_direct = direct
        self.with_redis = self.bridge if redis is None else redis
        self.redis_appendonly = redis_appendonly
        self.redis_args = tuple(redis_args)
        self.mom_bridge = mom_bridge
        self.dc_bridge = dc_bridge
        self.mom_opts = mom_opts
        self.dc_opts = dc_opts
        self.minion_opts = minion_opts
        self.timeout = timeout
        self.syndic_wait = syndic_wait
        self.log_level_logfile = log_level_logfile
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self.minion_grace = minion_grace
        self.keep_root = keep_root
        self.dc_links = dc_links
        self.api = api
        self.apis: dict[str, ApiSpec] = {}
        self.links: dict[str, Proxy] = {}
        self.user = getpass.getuser()
        # Only a root the lab made itself is deleted on stop (unless keep_root).
        self._owns_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.subnet: int | None = None
        self._lock_fd: int | None = None
        self.redis: RedisSpec | None = None
        self.masters: dict[str, MasterSpec] = {}
        self.minions: dict[str, MinionSpec] = {}
        self.started = False
        self._stopped = False
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None

    # ---------------------------------------------------------------- construction helpers

    @classmethod
    def direct(
        cls, dcs: Sequence[str] = DEFAULT_DCS, minions_per_dc: int = 2, **kwargs: Any
    ) -> Lab:
        """The baseline topology: ONE master (named ``master``) with every minion on it.

        Minion ids and grains are the same as in the bridged lab, so the same targets work.
        """
        return cls(dcs, minions_per_dc, direct=True, bridge=False, **kwargs)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        mode = "direct" if self.is_direct else ("bridged" if self.bridge else "plain")
        return f"<Lab {mode} root={self.root} subnet=127.0.{self.subnet}.x dcs={self.dcs}>"

    @property
    def top(self) -> str:
        """Name of the master the ``salt`` helpers talk to: the MoM, or the direct master."""
        return DIRECT if self.is_direct else MOM

    @property
    def all_dcs(self) -> tuple[str, ...]:
        """Every DC master: the MoM's DCs, then the DCs below a middle master (``sub_dcs``)."""
        return self.dcs + tuple(b for sub in self.sub_dcs.values() for b in sub)

    @property
    def minion_ids(self) -> list[str]:
        return [f"{dc}-m{i}" for dc in self.all_dcs for i in range(1, self.minions_per_dc + 1)]

    @property
    def redis_url(self) -> str:
        if self.redis is None:
            raise LabError("this lab runs no redis-server")
        return self.redis.url

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def mom_private_key(self) -> Path:
        return self.keys_dir / "mom.pem"

    @property
    def mom_public_key(self) -> Path:
        return self.keys_dir / "mom.pub"

    def mom_key(self, name: str, public: bool = False) -> Path:
        """Job signing key of a MoM: ``mom``, an extra MoM, or the MoM side of a middle master."""
        if name == MOM:
            return self.mom_public_key if public else self.mom_private_key
        return self.keys_dir / f"mom-{name}.{'pub' if public else 'pem'}"

    def parent_of(self, dc: str) -> str | None:
        """The middle master a bottom DC belongs to (None for the MoM's own DCs)."""
        return next((mid for mid, subs in self.sub_dcs.items() if dc in subs), None)

    def dc_private_key(self, dc: str) -> Path:
        """The key DC ``dc`` signs its uplink with (pre-seeded on the MoM as ``dc_keys``)."""
        return self.keys_dir / f"dc-{dc}.pem"

    def dc_public_key(self, dc: str) -> Path:
        return self.keys_dir / f"dc-{dc}.pub"

    def address(self, host: int) -> str:
        assert self.subnet is not None
        return f"127.0.{self.subnet}.{host}"

    def master(self, name: str) -> MasterSpec:
        try:
            return self.masters[name]
        except KeyError:
            raise LabError(f"no master {name!r}; masters: {sorted(self.masters)}") from None

    def conf_dir(self, name: str) -> Path:
        """Config dir of any daemon (pass it to ``salt -c`` / ``salt-call -c``)."""
        return self._daemon(name).conf_dir

    def minion_file(self, minion_id: str, relpath: str | os.PathLike[str]) -> Path:
        """Path of a file inside a minion's private root (where the lab states write)."""
        return self._minion(minion_id).root / relpath

    def minion_jids(self, minion_id: str) -> list[str]:
        """Jids appended by ``state.apply lab.jid`` on that minion, one per execution."""
        path = self.minion_file(minion_id, "jids.txt")
        return path.read_text().split() if path.exists() else []

    def _minion(self, minion_id: str) -> MinionSpec:
        try:
            return self.minions[minion_id]
        except KeyError:
            raise LabError(f"no minion {minion_id!r}; minions: {sorted(self.minions)}") from None

    def _daemon(self, name: str) -> DaemonSpec:
        if name == "redis" and self.redis is not None:
            return self.redis
        if name in self.masters:
            return self.masters[name]
        if name in self.minions:
            return self.minions[name]
        known = (["redis"] if self.redis else []) + sorted(self.masters) + sorted(self.minions)
        raise LabError(f"no daemon {name!r}; known: {known}")

    def daemons(self) -> list[DaemonSpec]:
        """Every daemon, in start order."""
        out: list[DaemonSpec] = [self.redis] if self.redis else []
        return out + list(self.masters.values()) + list(self.apis.values()) + list(self.minions.values())

    # ---------------------------------------------------------------- planning

    def _reserve_subnet(self) -> None:
        """Pick ``B`` in 10..250 whose 127.0.B.1..n have 4505/4506 free, and lock it.

        The lock file stops two labs on this host from racing for the same ``B`` between the
        bind test and the masters' own binds; the bind test catches anything else.
        """
        hosts = 1 if self.is_direct else 1 + len(self.all_dcs) + len(self.extra_moms)
        candidates = list(range(10, 251))
        random.shuffle(candidates)
        for subnet in candidates:
            # Lock files stay in /tmp (unlinking a flock file races with its next user).
            lock_path = f"/tmp/salt-redis-syndic-lab-127.0.{subnet}.lock"
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            if all(
                port_is_free(f"127.0.{subnet}.{h}", port)
                for h in range(1, hosts + 1)
                for port in (PUBLISH_PORT, RET_PORT, *((API_PORT,) if self.api and h == 1 else ()))
            ):
                self.subnet, self._lock_fd = subnet, fd
                return
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        raise LabError("no free 127.0.B.x subnet with ports 4505/4506 available")

    def _release_subnet(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = None

    def _plan_redis(self) -> None:
        rdir = self.root / "redis"
        self.redis = RedisSpec(
            name="redis",
            root=rdir,
            log_file=rdir / "redis.log",
            pidfile=rdir / "redis.pid",
            port=free_tcp_port(),
            appendonly=self.redis_appendonly,
            extra_args=self.redis_args,
        )

    def _start_links(self) -> None:
        redis = self._require_redis()
        for dc in self.dcs:
            self.links[dc] = Proxy("127.0.0.1", redis.port).start()

    def link(self, dc: str) -> Proxy:
        """The fault-injection proxy on ``dc``'s link to Redis (needs ``dc_links=True``)."""
        try:
            return self.links[dc]
        except KeyError:
            raise LabError(f"no link proxy for {dc!r}; build the lab with dc_links=True") from None

    def _plan_salt(self) -> None:
        """Lay out the masters (MoM at host 1, DCs at 2, 3, ...) and their minions."""
        if self.is_direct:
            self._add_master(DIRECT, role="direct", host=1, dc=None, minion_ids=self.minion_ids)
        else:
            self._add_master(MOM, role="mom", host=1, dc=None, minion_ids=[])
            for index, dc in enumerate(self.all_dcs, start=2):
                ids = [m for m in self.minion_ids if m.rsplit("-m", 1)[0] == dc]
                self._add_master(dc, role="dc", host=index, dc=dc, minion_ids=ids)
            for index, name in enumerate(self.extra_moms, start=2 + len(self.all_dcs)):
                self._add_master(name, role="mom", host=index, dc=None, minion_ids=[])
        for master in self.masters.values():
            for minion_id in master.minion_ids:
                self._add_minion(minion_id, master)

    def _common_paths(self, root: Path, kind: str) -> dict[str, Any]:
        """Every path option Salt would otherwise put under /etc, /var or a shared default."""
        return {
            "user": self.user,
            "root_dir": str(root),
            "pki_dir": str(root / "pki"),
            "cachedir": str(root / "cache"),
            "sock_dir": str(root / "sock"),
            "extension_modules": str(root / "extmods"),
            "log_file": str(root / "log" / f"{kind}.log"),
            "key_logfile": str(root / "log" / "key.log"),
            "pidfile": str(root / "run" / f"salt-{kind}.pid"),
            "log_level": "warning",
            "log_level_logfile": self.log_level_logfile,
        }

    def _add_master(
        self, name: str, *, role: str, host: int, dc: str | None, minion_ids: list[str]
    ) -> None:
        root = self.root / name
        conf: dict[str, Any] = self._common_paths(root, "master")
        conf.update(
            {
                "id": name,
                "interface": self.address(host),
                "publish_port": PUBLISH_PORT,
                "ret_port": RET_PORT,
                "worker_threads": 3,
                "timeout": self.timeout,
                "file_roots": {"base": [str(root / "srv" / "salt")]},
                "pillar_roots": {"base": [str(root / "srv" / "pillar")]},
            }
        )
        if self.api and name == self.top:
            conf.update(api_opts(conf["interface"], root))
        if role == "mom":
            conf.update({"order_masters": True, "syndic_wait": self.syndic_wait})
        else:
            conf["auto_accept"] = True
        if self.bridge and role == "mom":
            conf["redis_syndic"] = deep_merge(
                {
                    "role": "mom",
                    "redis_url": self.redis_url,
                    "signing_key": str(self.mom_key(name)),
                    "dc_keys": {d: str(self.dc_public_key(d)) for d in self.dcs},
                },
                self.mom_bridge,
            )
            conf["engines"] = [{"redis_syndic": {}}]
        elif self.bridge and role == "dc":
            assert dc is not None
            parent = self.parent_of(dc)
            moms = [MOM, *self.extra_moms] if parent is None else [parent]
            conf["redis_syndic"] = deep_merge(
                {
                    "role": "dc",
                    "dc": dc,
                    "redis_url": self.links[dc].url if dc in self.links else self.redis_url,
                    "trusted_keys": [str(self.mom_key(m, public=True)) for m in moms],
                    "signing_key": str(self.dc_private_key(dc)),
                    **({"namespace": self.sub_namespace(parent)} if parent else {}),
                    **({"relay": True} if dc in self.sub_dcs else {}),
                },
                _resolve(self.dc_bridge, dc),
            )
            conf["engines"] = [{"redis_syndic": {}}]
            conf["event_return"] = "redis_syndic"
            conf["event_return_whitelist"] = ["salt/job/*/ret/*"]
            if dc in self.sub_dcs:
                conf.update(self._middle_opts(dc, root))
        extra = self.mom_opts if role == "mom" else _resolve(self.dc_opts, dc or name)
        conf = deep_merge(conf, extra)
        self.masters[name] = MasterSpec(
            name=name,
            root=root,
            log_file=Path(conf["log_file"]),
            pidfile=Path(conf["pidfile"]),
            address=conf["interface"],
            role=role,
            dc=dc,
            minion_ids=list(minion_ids),
            config=conf,
        )

    @staticmethod
    def sub_namespace(middle: str) -> str:
        """Redis namespace between a middle master and the DCs below it."""
        return f"redis_syndic.{middle}"

    def _middle_opts(self, middle: str, root: Path) -> dict[str, Any]:
        """A middle master: DC of the MoM (the block) and MoM of its ``sub_dcs`` (a second engine).

        The second engine instance overrides what would collide with the DC side: role,
        namespace, state_dir (ledgers, dead letters, keyring) and signing key.  Its returns
        reach the middle's job cache and bus, where the DC side's returner sends them up.
        """
        return {
            "order_masters": True,  # publish jobs that match no local minion (they go further down)
            "syndic_wait": self.syndic_wait,
            "engines": [
                {"redis_syndic": {}},
                {"redis_syndic_down": {
                    "engine_module": "redis_syndic",
                    "role": "mom",
                    "namespace": self.sub_namespace(middle),
                    "state_dir": str(root / "cache" / "redis_syndic_down"),
                    "signing_key": str(self.mom_key(middle)),
                    "dc_keys": {d: str(self.dc_public_key(d)) for d in self.sub_dcs[middle]},
                }},
            ],
            "event_return_whitelist": ["salt/job/*/ret/*", "syndic/*/salt/job/*/new", "redis_syndic/job/*/released"],
        }

    def _add_minion(self, minion_id: str, master: MasterSpec) -> None:
        root = self.root / minion_id
        dc = minion_id.rsplit("-m", 1)[0]
        conf: dict[str, Any] = self._common_paths(root, "minion")
        conf.update(
            {
                "id": minion_id,
                "master": master.address,
                "acceptance_wait_time": 1,
                "random_reauth_delay": 0,
                # ZeroMQ's reconnect backoff (Salt default: up to 10 s, randomised) made a
                # minion take ~10 s to hear its master again after a restart. The lab is
                # about the bridge, not about minion reconnects: reconnect within 1 s.
                "recon_default": 100,
                "recon_max": 1000,
                "recon_randomize": False,
                # Salt 3008 passes every return through the minion's own event bus, which
                # trims values over max_event_size (1 MiB): raise it so big returns leave
                # the minion whole (needed on a single master too).
                "max_event_size": 16 * 1024 * 1024,
                "file_roots": {"base": [str(root / "srv" / "salt")]},
                "grains": {"dc": dc, "role": "web" if minion_id.endswith("-m1") else "db"},
            }
        )
        conf = deep_merge(conf, _resolve(self.minion_opts, dc))
        self.minions[minion_id] = MinionSpec(
            name=minion_id,
            root=root,
            log_file=Path(conf["log_file"]),
            pidfile=Path(conf["pidfile"]),
            minion_id=minion_id,
            master=master.name,
            dc=dc,
            config=conf,
        )

    def _write_files(self) -> None:
        if self.bridge:
            generate_ed25519_keypair(self.mom_private_key, self.mom_public_key)
            for name in (*self.extra_moms, *self.sub_dcs):
                generate_ed25519_keypair(self.mom_key(name), self.mom_key(name, public=True))
            for dc in self.all_dcs:
                generate_ed25519_keypair(self.dc_private_key(dc), self.dc_public_key(dc))
        if self.redis is not None:
            self.redis.root.mkdir(parents=True, exist_ok=True)
        for spec in list(self.masters.values()) + list(self.minions.values()):
            for sub in ("conf", "pki", "cache", "sock", "log", "run", "extmods", "srv/salt"):
                (spec.root / sub).mkdir(parents=True, exist_ok=True)
            kind = "master" if isinstance(spec, MasterSpec) else "minion"
            text = yaml.safe_dump(spec.config, default_flow_style=False, sort_keys=False)
            (spec.conf_dir / kind).write_text(f"# generated by lab\n{text}")
            if isinstance(spec, MasterSpec):
                write_state_tree(spec.root / "srv" / "salt")
                write_pillar_tree(spec.root / "srv" / "pillar", spec.dc)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Plan, write configs and keys, start every daemon and wait until usable.

        Ready means: redis answers PING; every master accepts on its ret port and has its IPC
        sockets; every minion's key is accepted and it answers ``test.ping`` from its own
        master. (Whether the bridge itself is up is the product's business: see
        :meth:`wait_bridge`.) On any failure the lab is torn down before the error propagates.
        """
        if self.started:
            return self
        begin = time.monotonic()
        self.started = True
        _LIVE_LABS.add(self)
        try:
            self._reserve_subnet()
            if self.with_redis:
                # Redis first, with its port settled, since every master config names it.
                self._plan_redis()
                start_redis_spec(self._require_redis(), may_move_port=True)
                if self.dc_links and self.bridge:
                    self._start_links()
            self._plan_salt()
            self._write_files()
            for master in self.masters.values():
                master.clear_runtime_files()
                master.spawn()
            for master in self.masters.values():
                self._wait_master(master)
            self._spawn_apis()  # salt-api starts while the minions do
            for minion in self.minions.values():
                minion.spawn()
            for master in self.masters.values():
                if master.minion_ids:
                    self._wait_minions(master)
            self._wait_apis()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - begin
        log.info("lab %s up in %.1fs", self, self.start_seconds)
        return self

    def stop(self) -> None:
        """Tear everything down; idempotent, never raises for a process that is already gone.

        SIGTERM to every daemon's process group at once, SIGKILL to whatever is left after
        ``stop_grace`` seconds (``minion_grace`` for minions), then a sweep by pidfile and by
        command line (anything naming a path under the lab root), so a daemon that moved a
        child out of its group leaves no orphan.
        """
        if self._stopped:
            return
        if not self.started:
            self._stopped = True
            if self._owns_root and not self.keep_root:
                shutil.rmtree(self.root, ignore_errors=True)
            return
        self._stopped = True
        begin = time.monotonic()
        try:
            # Salt minions take 5-10 s to act on SIGTERM (a blocking wait in their main loop)
            # and hold nothing a teardown needs, so they get a shorter grace than masters.
            terminate(
                self.daemons(),
                lambda spec: self.minion_grace if isinstance(spec, MinionSpec) else self.stop_grace,
            )
            self._sweep(str(self.root))
        finally:
            for proxy in self.links.values():
                proxy.stop()
            self._release_subnet()
            _LIVE_LABS.discard(self)
            if self._owns_root and not self.keep_root:
                shutil.rmtree(self.root, ignore_errors=True)
            self.stop_seconds = time.monotonic() - begin
            log.info("lab %s stopped in %.1fs", self.root, self.stop_seconds)

    def _sweep(self, needle: str) -> None:
        """SIGKILL any process whose command line mentions ``needle``; wait until gone."""
        import psutil

        procs = lab_processes(needle)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if procs:
            log.warning("swept %d stray process(es) under %s", len(procs), needle)
            psutil.wait_procs(procs, timeout=5)

    # ---------------------------------------------------------------- readiness

    def _spawn_apis(self) -> None:
        """``salt-api`` beside the top master (``api=True`` only)."""
        if not self.api:
            return
        master = self.master(self.top)
        spec = ApiSpec(name=f"{master.name}-api", root=master.root / "api", log_file=master.root / "log" / "api.log",
                       pidfile=master.root / "run" / "salt-api.pid", master_conf=master.conf_dir,
                       address=master.address)
        self.apis[master.name] = spec
        spec.spawn()

    def _wait_apis(self) -> None:
        """Every salt-api accepts on its port."""
        for spec in self.apis.values():

            def ready(spec: ApiSpec = spec) -> bool:
                if not spec.running():
                    raise LabError(spec.describe_failure("died during start"))
                return spec.is_ready()

            try:
                wait_until(ready, self.ready_timeout, f"salt-api on {spec.address}:{API_PORT}")
            except LabTimeout as exc:
                raise LabError(spec.describe_failure(str(exc))) from None

    def salt_api(self) -> SaltApi:
        """An HTTP client for the top master's salt-api (the lab must be built with ``api=True``)."""
        if self.top not in self.apis:
            raise LabError("this lab runs no salt-api: build it with api=True")
        return SaltApi(self.master(self.top).address)

    def _wait_master(self, master: MasterSpec, timeout: float | None = None) -> None:
        timeout = self.ready_timeout if timeout is None else timeout

        def ready() -> bool:
            if not master.running():
                raise LabError(master.describe_failure("died during start"))
            return master.is_ready()

        try:
            wait_until(ready, timeout, f"master {master.name} on {master.address}")
        except LabTimeout as exc:
            raise LabError(master.describe_failure(str(exc))) from None

    def _wait_minions(
        self, master: MasterSpec, ids: Sequence[str] | None = None, timeout: float | None = None
    ) -> None:
        """Keys accepted on the master, then every minion answers test.ping from it."""
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        ids = list(master.minion_ids if ids is None else ids)

        def keys_accepted() -> bool:
            for minion_id in ids:
                minion = self.minions[minion_id]
                if minion.process is not None and not minion.running():
                    raise LabError(minion.describe_failure("died during start"))
            return all((master.pki_dir / "minions" / m).exists() for m in ids)

        try:
            wait_until(keys_accepted, timeout, f"keys of {ids} on {master.name}")
        except LabTimeout as exc:
            raise LabError(master.describe_failure(str(exc))) from None
        answered: set[str] = set()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = sorted(set(ids) - answered)
                text = f"minions {missing} did not answer test.ping from {master.name}"
                for minion_id in missing:
                    text += "\n" + self.minions[minion_id].describe_failure("no answer", 20)
                raise LabError(master.describe_failure(text, 20))
            pending = sorted(set(ids) - answered)
            answered |= self._ping_once(master, pending, wait=min(4.0, max(remaining, 0.5)))
            if answered >= set(ids):
                return

    def _ping_once(self, master: MasterSpec, ids: Sequence[str], wait: float) -> set[str]:
        """Publish test.ping with ``--async`` and watch the master's job cache for ``wait`` s.

        A synchronous ``salt -t N`` costs N s plus a ``find_job`` round (gather_job_timeout,
        10 s, not settable from the CLI) for every minion that missed the publish, which is
        the common case right after a (re)start. Reading the job cache does not wait.
        """
        result = self._master_salt(
            master.name, "--async", "-L", ",".join(ids), "test.ping", timeout=30
        )
        jid = parse_async_jid(result.stdout)
        if jid is None:
            log.debug("publish on %s failed: %s %s", master.name, result.stdout, result.stderr)
            time.sleep(0.5)
            return set()
        end = time.monotonic() + wait
        answered: set[str] = set()
        while time.monotonic() < end:
            answered = {m for m, r in self.job_returns(master.name, jid).items() if r is True}
            if answered >= set(ids):
                break
            time.sleep(0.1)
        return answered

    def wait_bridge(self, timeout: float = 60.0, target: str = "*") -> float:
        """Poll ``salt <target> test.ping`` from the top master until every minion answers.

        Returns the seconds it took. For bridged labs this is the end-to-end readiness of
        the product under test (engines up, cursors placed), which :meth:`start` does not
        assume.
        """
        begin = time.monotonic()
        expected = set(self.minion_ids)
        last = ""
        while time.monotonic() - begin < timeout:
            result = self.salt(
                target, "test.ping", "-t", "10", "--out=json", "--static", timeout=60
            )
            last = result.stdout + result.stderr
            with contextlib.suppress(LabError):
                data = parse_json_output(result.stdout)
                if {m for m, r in data.items() if r is True} >= expected:
                    return time.monotonic() - begin
            time.sleep(1)
        raise LabError(
            self.master(self.top).describe_failure(
                f"not every minion answered test.ping through {self.top} in {timeout:.0f}s; "
                f"last CLI output:\n{last[-2000:]}"
            )
        )

    # ---------------------------------------------------------------- process control

    def start_master(self, name: str, wait_minions: bool = True) -> None:
        """(Re)start a stopped master with the same config, address and state.

        With ``wait_minions`` also wait until its minions answer it again (they re-auth on
        their own after a master restart).
        """
        master = self.master(name)
        master.clear_runtime_files()
        master.spawn()
        self._wait_master(master)
        if wait_minions and master.minion_ids:
            self._wait_minions(master)

    def stop_master(self, name: str) -> None:
        """Graceful stop (SIGTERM to its process group, SIGKILL after the grace period)."""
        terminate([self.master(name)], self.stop_grace)

    def kill_master(self, name: str) -> None:
        """Crash a master: SIGKILL to its whole process group, no chance to clean up."""
        terminate([self.master(name)], 0, signal.SIGKILL)

    def start_minion(self, minion_id: str) -> None:
        """(Re)start a stopped minion and wait until it answers its master again."""
        minion = self._minion(minion_id)
        minion.spawn()
        self._wait_minions(self.master(minion.master), [minion_id])

    def stop_minion(self, minion_id: str) -> None:
        terminate([self._minion(minion_id)], self.stop_grace)

    def kill_minion(self, minion_id: str) -> None:
        terminate([self._minion(minion_id)], 0, signal.SIGKILL)

    def _require_redis(self) -> RedisSpec:
        if self.redis is None:
            raise LabError("this lab runs no redis-server (bridge=False and redis not asked)")
        return self.redis

    def start_redis(self) -> None:
        """Restart redis on the same port and dir (so AOF data survives if enabled)."""
        start_redis_spec(self._require_redis())

    def stop_redis(self) -> None:
        terminate([self._require_redis()], self.stop_grace)

    def kill_redis(self) -> None:
        """SIGKILL: what Redis acknowledged but did not persist is gone."""
        terminate([self._require_redis()], 0, signal.SIGKILL)

    def pause_redis(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung server)."""
        self._require_redis().signal(signal.SIGSTOP)

    def resume_redis(self) -> None:
        self._require_redis().signal(signal.SIGCONT)

    def redis_client(self, **kwargs: Any) -> Any:
        """A redis-py client on the lab's Redis (decode_responses off unless asked)."""
        import redis as redis_py

        return redis_py.Redis.from_url(self.redis_url, **kwargs)

    # ---------------------------------------------------------------- CLI runners

    def _master_salt(
        self, master: str, *args: str, timeout: float = 60, script: str = "salt"
    ) -> subprocess.CompletedProcess[str]:
        argv = [find_script(script), "-c", str(self.master(master).conf_dir), *args]
        log.debug("running %s", " ".join(argv))
        try:
            return subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{' '.join(argv)} did not finish in {timeout}s") from exc

    def salt(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the ``salt`` CLI against the MoM (or the direct master); text output."""
        return self._master_salt(self.top, *args, timeout=timeout)

    def salt_json(self, *args: str, timeout: float = 60) -> Any:
        """``salt ... --out=json --static`` against the MoM, parsed."""
        result = self.salt(*args, "--out=json", "--static", timeout=timeout)
        return parse_json_output(result.stdout, result)

    def salt_async(self, *args: str, timeout: float = 60) -> str:
        """``salt --async ...`` against the MoM; returns the jid (the CLI prints no result)."""
        result = self.salt("--async", *args, timeout=timeout)
        jid = parse_async_jid(result.stdout)
        if jid is None:
            raise LabError(f"no jid in salt --async output:\n{result.stdout}\n{result.stderr}")
        return jid

    def salt_run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``salt-run`` against the MoM (or the direct master)."""
        return self._master_salt(self.top, *args, timeout=timeout, script="salt-run")

    def salt_run_json(self, *args: str, timeout: float = 60) -> Any:
        result = self.salt_run(*args, "--out=json", timeout=timeout)
        return parse_json_output(result.stdout, result)

    def master_salt_json(self, master: str, *args: str, timeout: float = 60) -> Any:
        """``salt ... --out=json --static`` against any master (an extra MoM, a middle master)."""
        result = self._master_salt(master, *args, "--out=json", "--static", timeout=timeout)
        return parse_json_output(result.stdout, result)

    def dc_salt(self, dc: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the ``salt`` CLI against one DC master, bypassing the bridge."""
        return self._master_salt(dc, *args, timeout=timeout)

    def dc_salt_json(self, dc: str, *args: str, timeout: float = 60) -> Any:
        result = self.dc_salt(dc, *args, "--out=json", "--static", timeout=timeout)
        return parse_json_output(result.stdout, result)

    def dc_salt_run(
        self, dc: str, *args: str, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return self._master_salt(dc, *args, timeout=timeout, script="salt-run")

    # ---------------------------------------------------------------- readers

    def job_returns(self, master: str, jid: str, full: bool = False) -> dict[str, Any]:
        """Returns stored for ``jid`` in a master's local job cache, by minion id.

        Reads the ``local_cache`` layout directly (``jobs/<h[:2]>/<h[2:]>/<minion>/return.p``)
        instead of spawning ``salt-run jobs.lookup_jid``: faster, and it shows exactly what
        was written, independent of runner logic. ``full`` returns the whole record
        (``return``, ``retcode``, ``success``) instead of only ``return``.
        """
        import salt.payload

        spec = self.master(master)
        hash_type = spec.config.get("hash_type", "sha256")
        digest = hashlib.new(hash_type, str(jid).encode()).hexdigest()
        jid_dir = spec.cachedir / "jobs" / digest[:2] / digest[2:]
        out: dict[str, Any] = {}
        if not jid_dir.is_dir():
            return out
        for minion_dir in sorted(p for p in jid_dir.iterdir() if p.is_dir()):
            ret_file = minion_dir / "return.p"
            if not ret_file.exists():
                continue
            with open(ret_file, "rb") as fh:
                record = salt.payload.load(fh)
            out[minion_dir.name] = record if full else record.get("return")
        return out

    def mom_job_returns(self, jid: str, full: bool = False) -> dict[str, Any]:
        """Returns the MoM's job cache holds for ``jid`` (see :meth:`job_returns`)."""
        return self.job_returns(self.top, jid, full=full)

    def log(self, name: str) -> str:
        """Full text of a daemon's log file ('' if none yet). ``name``: redis, mom, east, ..."""
        path = self._daemon(name).log_file
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, name: str, lines: int = 40) -> str:
        return tail(self._daemon(name).log_file, lines)

    def log_tails(self, names: Iterable[str] | None = None, lines: int = 40) -> str:
        """Tails of several logs (default: every master), formatted for a failure report."""
        names = list(names) if names is not None else list(self.masters)
        chunks = []
        for name in names:
            with contextlib.suppress(LabError):
                path = self._daemon(name).log_file
                chunks.append(f"--- {name}: {path} ---\n{self.log_tail(name, lines)}")
        return "\n".join(chunks)


def parse_async_jid(text: str) -> str | None:
    """The jid from ``salt --async`` output ("Executed command with job ID: <jid>")."""
    match = re.search(r"job ID:\s*(\d+)", text)
    return match.group(1) if match else None


def parse_json_output(text: str, result: subprocess.CompletedProcess[str] | None = None) -> Any:
    """Parse the JSON a Salt CLI printed, tolerating noise lines before it."""
    stripped = text.strip()
    candidates = [stripped]
    starts = [m.start() for m in re.finditer(r"^[\[{]", text, re.MULTILINE)]
    candidates += [text[i:].strip() for i in starts]
    for candidate in candidates:
        if not candidate:
            continue
        with contextlib.suppress(ValueError):
            return json.loads(candidate)
    detail = f"\nstdout:\n{text[-2000:]}"
    if result is not None:
        detail = f" from {' '.join(map(str, result.args))} (rc {result.returncode})" + detail
        detail += f"\nstderr:\n{result.stderr[-2000:]}"
    raise LabError(f"no JSON in Salt CLI output{detail}")


def parse_json_documents(text: str) -> dict[str, Any]:
    """``salt --out=json`` without ``--static`` prints one JSON document per minion: merged.

    (Salt 3008 runs ``--static`` as a 100% batch, which prints no jid and drops ``--metadata``.)
    """
    decoder, merged, index = json.JSONDecoder(), {}, text.find("{")
    while index != -1:
        doc, end = decoder.raw_decode(text, index)
        merged.update(doc)
        index = text.find("{", end)
    return merged


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def _minion_blocks(text: str, ids: Iterable[str]) -> dict[str, str]:
    """Split a Salt CLI text output into per-minion blocks keyed by the ``<id>:`` headers."""
    ids = set(ids)
    blocks: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        header = line.rstrip()[:-1] if line.rstrip().endswith(":") else None
        if header in ids:
            current = header
            blocks[current] = ""
        elif current is not None:
            blocks[current] += line + "\n"
    return blocks


def _check_blocks(text: str, ids: Sequence[str], state: bool) -> list[str]:
    """Names of minions whose result is missing (or failed, for a state run)."""
    blocks = _minion_blocks(text, ids)
    bad = []
    for minion_id in ids:
        block = blocks.get(minion_id)
        missing = block is None or "Minion did not return" in block
        failed = state and not re.search(r"^Failed:\s+0\s*$", block or "", re.MULTILINE)
        if missing or failed:
            bad.append(minion_id)
    return bad


def _demo(args: argparse.Namespace) -> int:
    dcs = tuple(args.dcs.split(","))
    lab = Lab(dcs, args.minions, keep_root=args.keep)
    print(f"building lab under {lab.root} ...", flush=True)
    failed: list[str] = []
    try:
        lab.start()
        print(f"lab up in {lab.start_seconds:.1f}s: {lab}", flush=True)
        for cmd in (["*", "test.ping"], ["*", "state.apply", "lab"]):
            begin = time.monotonic()
            result = lab.salt(*cmd, "--static", timeout=args.cli_timeout)
            wall = time.monotonic() - begin
            print(f"\n$ salt {' '.join(repr(c) if c == '*' else c for c in cmd)}   "
                  f"[{wall:.2f}s, rc {result.returncode}]")  # fmt: skip
            print(result.stdout.rstrip())
            if result.stderr.strip():
                print(result.stderr.rstrip(), file=sys.stderr)
            bad = _check_blocks(result.stdout, lab.minion_ids, state=cmd[1] == "state.apply")
            if bad:
                print(f"!! missing or failed: {', '.join(bad)}")
                failed += [f"{cmd[1]}:{m}" for m in bad]
        # What an operator looks at on the MoM: every DC's health, and one job per DC.
        jid = lab.salt_run_json("jobs.list_jobs", "search_function=state.apply", timeout=args.cli_timeout)
        for run in (["redis_syndic.status"], ["redis_syndic.job", max(jid) if jid else ""]):
            result = lab.salt_run(*run, timeout=args.cli_timeout)
            print(f"\n$ salt-run {' '.join(run)}   [rc {result.returncode}]")
            print(result.stdout.rstrip())
            if result.returncode != 0:
                failed.append(run[0])
    except LabError as exc:
        print(f"lab error: {exc}", file=sys.stderr)
        failed.append("lab")
    finally:
        lab.stop()
        print(f"\nlab torn down in {lab.stop_seconds or 0:.1f}s")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("OK: every minion answered")
    return 0


def _up(args: argparse.Namespace) -> int:
    dcs = tuple(args.dcs.split(","))
    lab = Lab(dcs, args.minions, bridge=not args.no_bridge, keep_root=args.keep)
    # Turn SIGTERM into a normal exit so the daemons are torn down too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        lab.start()
        py = os.path.dirname(sys.executable)
        print(textwrap.dedent(f"""\
            lab up in {lab.start_seconds:.1f}s: {lab}
            redis:   {lab.redis.url if lab.redis else '(none)'}
            """))  # fmt: skip
        for name, master in lab.masters.items():
            print(f"{name:8} {master.address}  -c {master.conf_dir}  log {master.log_file}")
        print(textwrap.dedent(f"""
            try:
              {py}/salt -c {lab.conf_dir(lab.top)} '*' test.ping
              {py}/salt -c {lab.conf_dir(lab.top)} '*' state.apply lab
              {py}/salt -c {lab.conf_dir(lab.dcs[0])} '*' test.ping      # one DC directly
            Ctrl-C to tear down."""))  # fmt: skip
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\ntearing down ...")
    except LabError as exc:
        print(f"lab error: {exc}", file=sys.stderr)
        return 1
    finally:
        lab.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lab", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log lab steps to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("demo", "build, run test.ping and state.apply from the MoM, tear down"),
                           ("up", "build and keep running until Ctrl-C")):  # fmt: skip
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("--minions", type=int, default=2, help="minions per DC (default 2)")
        cmd.add_argument("--dcs", default=",".join(DEFAULT_DCS), help="comma-separated DC names")
        cmd.add_argument("--keep", action="store_true", help="keep the lab root after teardown")
        if name == "demo":
            cmd.add_argument("--cli-timeout", type=float, default=120, help="per CLI call, seconds")
        else:
            cmd.add_argument("--no-bridge", action="store_true", help="plain topology, no bridge")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    return _demo(args) if args.command == "demo" else _up(args)


if __name__ == "__main__":
    sys.exit(main())
