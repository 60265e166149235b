"""announced_key: what the MoM takes from a DC's key announcement before the keyring parses it."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.wire.announce import MAX_PEM_BYTES, announced_key

pytestmark = pytest.mark.unit


def test_an_announced_pem_comes_back_as_text():
    pem = Signer(Ed25519PrivateKey.generate()).public_pem
    assert announced_key(pem.encode()) == pem
    assert announced_key(pem) == pem


@pytest.mark.parametrize("raw", [None, b"", 12, [b"pem"], b"x" * (MAX_PEM_BYTES + 1)])
def test_nothing_usable_is_nothing_announced(raw):
    assert announced_key(raw) is None
