"""Redis over TLS against a real redis-server started with --tls-port and a CA made here.

The engines connect through ``transport.connection.make_client``; these tests drive it with
the same settings an operator writes (``rediss://`` + ``ssl_ca_certs``/``ssl_certfile``/
``ssl_keyfile``), including the failures that must stay failures.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab import free_tcp_port
from salt_redis_syndic.config import load_settings
from salt_redis_syndic.transport.connection import make_client
from salt_redis_syndic.transport.stream import JobStream

pytestmark = pytest.mark.functional


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, key, cert) -> None:
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(directory: Path, name: str) -> tuple:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    _write(directory / name, key, cert)
    return key, cert


def issue(directory: Path, name: str, ca: tuple, san: list[x509.GeneralName], usage) -> None:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(directory / name, key, cert)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    ca = make_ca(tmp_path, "ca")
    make_ca(tmp_path, "other-ca")
    localhost = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    issue(tmp_path, "server", ca, localhost, ExtendedKeyUsageOID.SERVER_AUTH)
    issue(tmp_path, "wrong-host", ca, [x509.DNSName("redis.elsewhere.example")], ExtendedKeyUsageOID.SERVER_AUTH)
    issue(tmp_path, "client", ca, [x509.DNSName("dc-east")], ExtendedKeyUsageOID.CLIENT_AUTH)
    return tmp_path


def tls_redis(factory, pki: Path, server_cert: str = "server"):
    port = free_tcp_port()
    server = factory(extra_args=(
        "--tls-port", str(port), "--tls-cert-file", str(pki / f"{server_cert}.crt"),
        "--tls-key-file", str(pki / f"{server_cert}.key"), "--tls-ca-cert-file", str(pki / "ca.crt"),
        "--tls-auth-clients", "yes"))
    return server, port


def settings(port: int, pki: Path, **tls):
    block = {"role": "mom", "redis_url": f"rediss://127.0.0.1:{port}/0", "socket_timeout": 2, "connect_timeout": 2, **tls}
    return load_settings({"id": "mom", "cachedir": str(pki / "cache"), "pki_dir": str(pki)}, block)


def test_tls_with_client_certificate_carries_the_job_stream(redis_server_factory, pki):
    _, port = tls_redis(redis_server_factory, pki)
    s = settings(port, pki, ssl_ca_certs=str(pki / "ca.crt"), ssl_certfile=str(pki / "client.crt"),
                 ssl_keyfile=str(pki / "client.key"))
    client = make_client(s.redis)
    assert client.ping() is True
    stream = JobStream(client, "redis_syndic:jobs", 100)
    stream.append([{"b": b"body", "s": b"sig", "k": b"kid"}])
    assert [f[b"b"] for _, f in stream.read("0-0", 10, None)] == [b"body"]
    assert "client.key" not in repr(s) and "ssl_keyfile" not in repr(s.redis)


def test_tls_without_client_certificate_is_refused(redis_server_factory, pki):
    _, port = tls_redis(redis_server_factory, pki)
    client = make_client(settings(port, pki, ssl_ca_certs=str(pki / "ca.crt")).redis)
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()


def test_tls_server_from_an_untrusted_ca_is_refused(redis_server_factory, pki):
    _, port = tls_redis(redis_server_factory, pki)
    client = make_client(settings(port, pki, ssl_ca_certs=str(pki / "other-ca.crt"), ssl_certfile=str(pki / "client.crt"),
                                  ssl_keyfile=str(pki / "client.key")).redis)
    with pytest.raises(redis.exceptions.ConnectionError, match="(?i)certificate"):
        client.ping()


def test_tls_hostname_is_checked_unless_disabled(redis_server_factory, pki):
    _, port = tls_redis(redis_server_factory, pki, server_cert="wrong-host")
    common = {"ssl_ca_certs": str(pki / "ca.crt"), "ssl_certfile": str(pki / "client.crt"),
              "ssl_keyfile": str(pki / "client.key")}
    with pytest.raises(redis.exceptions.ConnectionError, match="(?i)hostname|match|certificate"):
        make_client(settings(port, pki, **common).redis).ping()
    assert make_client(settings(port, pki, ssl_check_hostname=False, **common).redis).ping() is True
