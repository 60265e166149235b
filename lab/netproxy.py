"""A small TCP proxy that injects network faults between a client and Redis (test tool).

The bridge's promises are about bad links: a DC whose link to Redis is cut, hangs or crawls
must lose nothing. Killing Redis is not the same fault: a dead WAN link gives no RST and no
error, only silence. This proxy reproduces the link faults on loopback::

    proxy = Proxy("127.0.0.1", redis_port).start()
    url = f"redis://127.0.0.1:{proxy.port}/0"     # give this to the component under test
    proxy.blackhole(); ...; proxy.heal()

Modes (switchable at any time, from any thread):

- ``heal()``: forward both ways (the default);
- ``delay(s)``: forward, each chunk delivered ``s`` seconds after it was read, each way,
  order preserved (latency, not a bandwidth cap);
- ``blackhole()``: connections stay open, nothing moves in either direction, no RST: a dead
  WAN link. Data sent meanwhile is held (in the proxy's bounded queues, then in the kernel's
  socket buffers) and delivered on ``heal()``, as TCP retransmission would after a real outage;
- ``cut()``: every current connection is reset and new ones are accepted then reset at once.

Each connection uses four threads (a reader and a writer per direction, joined by a bounded
queue), so a delay on one direction never stalls the other. ``stop()`` closes everything and
joins every thread.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import queue
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
QUEUE_CHUNKS = 64  # per direction: at most 4 MiB held by the proxy itself
_POLL = 0.1
_EOF = b""


class Mode(enum.Enum):
    FORWARD = "forward"
    BLACKHOLE = "blackhole"
    CUT = "cut"


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), so the peer sees an error at once.

    ``shutdown`` first wakes any proxy thread blocked in ``recv`` or ``send`` on the socket
    (closing the fd alone does not); the peer may see that FIN just before the RST.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


@dataclass(eq=False)  # identity semantics: connections live in a set
class _Connection:
    """One proxied client connection and its upstream twin."""

    client: socket.socket
    upstream: socket.socket
    closed: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    _done_directions: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self, reset: bool = False) -> None:
        """Close both sockets once; shutdown first so threads blocked in recv wake up."""
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
        for sock in (self.client, self.upstream):
            if reset:
                _reset(sock)
                continue
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def direction_done(self) -> None:
        """Called by each writer when its direction ended; the second one closes the pair."""
        with self._lock:
            self._done_directions += 1
            both = self._done_directions >= 2
        if both:
            self.close()


class Proxy:
    """Threaded TCP proxy with switchable faults. See the module docstring."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listen_address = (listen_host, listen_port)
        self.connect_timeout = connect_timeout
        self._mode = Mode.FORWARD
        self._delay = 0.0
        self._state = threading.Condition()
        self._conns: set[_Connection] = set()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stats_lock = threading.Lock()
        self.bytes_up = 0  # client -> upstream, forwarded
        self.bytes_down = 0  # upstream -> client, forwarded
        self.accepted = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Bind, listen and start accepting; returns self (``.port`` is then known)."""
        if self._listener is not None:
            raise RuntimeError("proxy already started")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(self.listen_address)
        listener.listen(128)
        listener.settimeout(_POLL)
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"netproxy-accept-{self.port}", daemon=True
        )
        self._accept_thread.start()
        log.debug("proxy %s -> %s:%s started", self.port, *self.upstream)
        return self

    def stop(self) -> None:
        """Close the listener and every connection, and join every thread. Idempotent."""
        self._stopping.set()
        with self._state:
            self._state.notify_all()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        for conn in self._snapshot():
            conn.close()
        for conn in self._snapshot():
            for thread in conn.threads:
                if thread is not threading.current_thread():
                    thread.join(timeout=5)
        with self._state:
            self._conns.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("proxy not started")
        return int(self._listener.getsockname()[1])

    @property
    def host(self) -> str:
        return self.listen_address[0]

    @property
    def url(self) -> str:
        """``redis://host:port/0`` through the proxy (handy when upstream is Redis)."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def connections(self) -> int:
        """Number of open proxied connections."""
        return len(self._snapshot())

    def threads(self) -> list[threading.Thread]:
        """Every thread the proxy still runs (for leak checks)."""
        out = [t for c in self._snapshot() for t in c.threads if t.is_alive()]
        if self._accept_thread is not None and self._accept_thread.is_alive():
            out.append(self._accept_thread)
        return out

    # ------------------------------------------------------------------ faults

    def heal(self) -> None:
        """Forward normally again, with no added delay; held data flows on."""
        self._set(Mode.FORWARD, 0.0)

    def delay(self, seconds: float) -> None:
        """Forward with ``seconds`` of added latency per chunk, each way."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self._set(Mode.FORWARD, float(seconds))

    def blackhole(self) -> None:
        """Keep connections open but move nothing, either way, until :meth:`heal`."""
        self._set(Mode.BLACKHOLE, self._delay)

    def cut(self) -> None:
        """Reset every connection now; accept-and-reset new ones until :meth:`heal`."""
        with self._state:
            self._mode = Mode.CUT
            self._state.notify_all()
            victims = list(self._conns)
        log.debug("proxy %s: cut", self.port)
        for conn in victims:
            conn.close(reset=True)

    def _set(self, mode: Mode, delay: float) -> None:
        with self._state:
            self._mode, self._delay = mode, delay
            self._state.notify_all()
        log.debug("proxy %s: %s delay=%.3f", self.port, mode.value, delay)

    # ------------------------------------------------------------------ internals

    def _snapshot(self) -> list[_Connection]:
        with self._state:
            return list(self._conns)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(_POLL)
                continue
            self.accepted += 1
            if self._mode is Mode.CUT:
                _reset(client)
                continue
            try:
                self._open(client)
            except Exception:  # the accept loop must outlive one bad connection
                log.exception("proxy %s: could not open a proxied connection", self.port)
                _reset(client)
        self._reap()

    def _open(self, client: socket.socket) -> None:
        client.settimeout(None)
        try:
            upstream = socket.create_connection(self.upstream, timeout=self.connect_timeout)
        except OSError as exc:
            log.debug("proxy %s: upstream connect failed: %s", self.port, exc)
            _reset(client)
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(client, upstream)
        for src, dst, name in ((client, upstream, "up"), (upstream, client, "down")):
            pipe: queue.Queue[tuple[float, bytes]] = queue.Queue(maxsize=QUEUE_CHUNKS)
            conn.threads += [
                threading.Thread(
                    target=self._reader, args=(conn, src, pipe), daemon=True,
                    name=f"netproxy-{self.port}-{name}-read",
                ),
                threading.Thread(
                    target=self._writer, args=(conn, dst, pipe, name), daemon=True,
                    name=f"netproxy-{self.port}-{name}-write",
                ),
            ]  # fmt: skip
        with self._state:
            # Checked under the lock cut() takes, so a connection accepted while cut() runs
            # is either seen and reset by cut(), or reset here.
            refused = self._mode is Mode.CUT or self._stopping.is_set()
            if not refused:
                self._reap_locked()
                self._conns.add(conn)
        if refused:
            conn.close(reset=True)
            return
        for thread in conn.threads:
            thread.start()

    def _reap(self) -> None:
        with self._state:
            self._reap_locked()

    def _reap_locked(self) -> None:
        for conn in [c for c in self._conns if c.closed.is_set()]:
            if not any(t.is_alive() for t in conn.threads):
                self._conns.discard(conn)

    def _reader(
        self, conn: _Connection, src: socket.socket, pipe: queue.Queue[tuple[float, bytes]]
    ) -> None:
        """Read chunks, stamp their delivery time, queue them (blocking when the queue is full,
        which stops reading and lets the kernel buffers apply TCP back-pressure)."""
        try:
            while not conn.closed.is_set():
                try:
                    data = src.recv(CHUNK)
                except OSError:
                    data = _EOF
                with self._state:
                    due = time.monotonic() + self._delay
                if not self._put(conn, pipe, (due, data)) or data == _EOF:
                    return
        finally:
            self._put(conn, pipe, (0.0, _EOF))

    def _put(
        self, conn: _Connection, pipe: queue.Queue[tuple[float, bytes]], item: tuple[float, bytes]
    ) -> bool:
        while not conn.closed.is_set():
            try:
                pipe.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _writer(
        self,
        conn: _Connection,
        dst: socket.socket,
        pipe: queue.Queue[tuple[float, bytes]],
        direction: str,
    ) -> None:
        """Deliver queued chunks in order, each no earlier than its due time, never while
        blackholed; an EOF half-closes the destination."""
        try:
            while not conn.closed.is_set():
                try:
                    due, data = pipe.get(timeout=_POLL)
                except queue.Empty:
                    continue
                if not self._wait_deliverable(conn, due):
                    return
                if data == _EOF:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    conn.close()
                    return
                with self._stats_lock:
                    if direction == "up":
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
        finally:
            conn.direction_done()

    def _wait_deliverable(self, conn: _Connection, due: float) -> bool:
        """Block until the chunk may go: due time reached and not blackholed.

        False if the connection closed or the proxy stops meanwhile.
        """
        with self._state:
            while True:
                if conn.closed.is_set() or self._stopping.is_set():
                    return False
                if self._mode is Mode.FORWARD:
                    wait = due - time.monotonic()
                    if wait <= 0:
                        return True
                    self._state.wait(min(wait, _POLL))
                else:
                    self._state.wait(_POLL)
