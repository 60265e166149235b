"""One name pattern everywhere, and a trailing newline is no part of a name (``$`` would allow it)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from salt_redis_syndic.config import load_settings
from salt_redis_syndic.errors import ConfigError, RejectedEntry
from salt_redis_syndic.security.dckeys import DcKeyring
from salt_redis_syndic.security.names import NAME_RE
from salt_redis_syndic.security.signing import Signer
from salt_redis_syndic.wire.confirm import Confirm, decode_confirm

pytestmark = pytest.mark.unit

PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA" + "A" * 43 + "=\n-----END PUBLIC KEY-----\n"


def test_a_name_with_a_trailing_newline_is_not_a_name():
    assert NAME_RE.match("east")
    assert not NAME_RE.match("east\n")


def test_config_option_dc_refuses_a_trailing_newline():
    opts = {"id": "mom1", "cachedir": "/var/cache/salt/master", "pki_dir": "/etc/salt/pki/master",
            "redis_syndic": {"role": "dc", "dc": "east\n", "redis_url": "redis://127.0.0.1:6379/0",
                             "trusted_keys": [PEM]}}
    with pytest.raises(ConfigError) as err:
        load_settings(opts)
    assert err.value.option == "dc"


def test_dc_keyring_refuses_a_name_with_a_trailing_newline(tmp_path):
    east = Signer(Ed25519PrivateKey.generate())
    ring = DcKeyring(str(tmp_path))
    assert ring.note_announced("east\n", east.public_pem) is None
    with pytest.raises(ConfigError):
        DcKeyring(str(tmp_path), {"east\n": east.public_pem})
    assert ring.list() == []


def test_wire_names_refuse_a_trailing_newline():
    assert decode_confirm(Confirm("mom1", "east", 1, 1).encode()).dc == "east"
    for mom, dc in (("mom1", "east\n"), ("mom1\n", "east")):
        with pytest.raises(RejectedEntry):
            decode_confirm(Confirm(mom, dc, 1, 1).encode())
