"""Redis Sentinel: the engines' client follows a failover by itself (real redis-servers).

Topology made here: a primary, a replica of it and one Sentinel (quorum 1, 1 s down-after).
The client is built from a ``redis+sentinel://`` URL by ``make_client``, exactly as the
engines build theirs.  Killing the primary must not stop the job stream for long, and what
was replicated before the kill stays readable after it.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import redis

from lab import find_script, free_tcp_port
from salt_redis_syndic.config import ConfigError, load_settings
from salt_redis_syndic.transport.connection import TRANSIENT, make_client
from salt_redis_syndic.transport.sentinel import parse_sentinel_url
from salt_redis_syndic.transport.stream import JobStream

pytestmark = pytest.mark.functional


def settings(url: str, tmp_path: Path, **extra):
    return load_settings({"id": "mom", "cachedir": str(tmp_path), "pki_dir": str(tmp_path)},
                         {"role": "mom", "redis_url": url, "socket_timeout": 1, "connect_timeout": 1, **extra})


def test_sentinel_url_parsing_and_validation(tmp_path):
    target = parse_sentinel_url("redis+sentinel://app:s%40cret@10.0.0.1:26379,[::1]:26380/mymaster/3")
    assert target.hosts == (("10.0.0.1", 26379), ("::1", 26380))
    assert (target.service, target.db, target.username, target.password) == ("mymaster", 3, "app", "s@cret")
    assert "s@cret" not in repr(target)
    for bad in ("redis+sentinel://h:1", "redis+sentinel:///svc", "redis+sentinel://h:x/svc", "redis+sentinel://h:1/svc/x"):
        with pytest.raises(ConfigError) as err:
            settings(bad, tmp_path)
        assert err.value.option == "redis_url"


def test_client_follows_a_failover(sentinel_setup, tmp_path):
    primary, replica, sentinel_port = sentinel_setup
    client = make_client(settings(f"redis+sentinel://127.0.0.1:{sentinel_port}/lab/0", tmp_path).redis)
    stream = JobStream(client, "redis_syndic:jobs", 1000)
    stream.append([{"b": b"before", "s": b"s", "k": b"k"}])
    assert primary.client().xlen("redis_syndic:jobs") == 1  # it really wrote to the primary
    deadline = time.monotonic() + 10
    while replica.client().xlen("redis_syndic:jobs") != 1:  # replicated before the crash
        assert time.monotonic() < deadline, "replica never caught up"
        time.sleep(0.05)
    primary.kill()

    deadline = time.monotonic() + 30
    while True:
        try:
            stream.append([{"b": b"after", "s": b"s", "k": b"k"}])
            break
        except (*TRANSIENT, redis.exceptions.ReadOnlyError):
            if time.monotonic() > deadline:
                pytest.fail("the client did not reach the promoted replica within 30 s")
            time.sleep(0.3)
    bodies = [fields[b"b"] for _, fields in stream.read("0-0", 10, None)]
    assert bodies == [b"before", b"after"]
    assert replica.client().info("replication")["role"] == "master"


@pytest.mark.parametrize("sentinel_password", ["sentinel-secret"])
def test_sentinel_with_its_own_password(sentinel_setup, tmp_path, sentinel_password):
    primary, _, sentinel_port = sentinel_setup
    url = f"redis+sentinel://127.0.0.1:{sentinel_port}/lab/0"
    with pytest.raises(redis.exceptions.RedisError):
        make_client(settings(url, tmp_path).redis).ping()  # the sentinel refuses an unauthenticated query
    s = settings(url, tmp_path, sentinel_password=sentinel_password)
    assert "sentinel-secret" not in repr(s)
    client = make_client(s.redis)
    assert client.ping() is True
    JobStream(client, "redis_syndic:jobs", 100).append([{"b": b"x", "s": b"s", "k": b"k"}])
    assert primary.client().xlen("redis_syndic:jobs") == 1


def test_sentinel_over_tls(redis_server_factory, tmp_path):
    """rediss+sentinel://: TLS to the Sentinel and to the primary it names, with a client certificate."""
    import ipaddress

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID
    from test_tls import (  # the CA helpers of the TLS tests (same directory)
        issue,
        make_ca,
    )

    ca = make_ca(tmp_path, "ca")
    issue(tmp_path, "server", ca, [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], ExtendedKeyUsageOID.SERVER_AUTH)
    issue(tmp_path, "client", ca, [x509.DNSName("redis-syndic")], ExtendedKeyUsageOID.CLIENT_AUTH)
    tls = {"tls-cert-file": "server.crt", "tls-key-file": "server.key", "tls-ca-cert-file": "ca.crt",
           "tls-client-cert-file": "client.crt", "tls-client-key-file": "client.key"}
    tls_args = [a for k, v in tls.items() for a in (f"--{k}", str(tmp_path / v))] + [
        "--tls-replication", "yes", "--tls-auth-clients", "yes"]
    primary_tls = free_tcp_port()
    primary = redis_server_factory(extra_args=("--tls-port", str(primary_tls), *tls_args))
    port = free_tcp_port()
    conf = tmp_path / "sentinel-tls.conf"
    conf.write_text(f"port 0\ntls-port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    + "".join(f"{k} {tmp_path / v}\n" for k, v in tls.items())
                    + "tls-replication yes\ntls-auth-clients yes\n"
                    + f"sentinel monitor lab 127.0.0.1 {primary_tls} 1\n")
    proc = subprocess.Popen([find_script("redis-server"), str(conf), "--sentinel"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"rediss+sentinel://127.0.0.1:{port}/lab/0"
        common = {"ssl_ca_certs": str(tmp_path / "ca.crt")}
        client = make_client(settings(url, tmp_path, ssl_certfile=str(tmp_path / "client.crt"),
                                      ssl_keyfile=str(tmp_path / "client.key"), **common).redis)
        deadline = time.monotonic() + 20
        while True:
            try:
                JobStream(client, "redis_syndic:jobs", 100).append([{"b": b"tls", "s": b"s", "k": b"k"}])
                break
            except (*TRANSIENT, redis.RedisError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        assert primary.client().xlen("redis_syndic:jobs") == 1  # written over TLS to the primary the Sentinel named
        with pytest.raises(redis.RedisError):  # no client certificate: the Sentinel refuses the TLS session
            make_client(settings(url, tmp_path, **common).redis).ping()
    finally:
        proc.kill()
        proc.wait(timeout=10)
