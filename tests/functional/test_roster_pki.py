"""Pin: the roster reads key states from pki_dir exactly as Salt 3008's ``salt-key -L`` lists them."""

from __future__ import annotations

from pathlib import Path

import pytest

from salt_redis_syndic.estate.roster import scan_pki

pytestmark = pytest.mark.functional


def test_scan_pki_agrees_with_salt_key_list_keys(tmp_path: Path) -> None:
    import salt.config
    import salt.key

    pki = tmp_path / "pki"
    layout = {"minions": ["web1", "web2"], "minions_pre": ["new1"], "minions_rejected": ["bad1"],
              "minions_denied": ["evil1"]}
    for sub, names in layout.items():
        (pki / sub).mkdir(parents=True)
        for name in names:
            (pki / sub / name).write_text("-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----\n")
    (pki / "minions" / ".key_cache").write_text("")
    opts = salt.config.master_config(None)
    opts.update(pki_dir=str(pki), cachedir=str(tmp_path / "cache"), sock_dir=str(tmp_path / "sock"),
                user=None, key_cache="")
    listed = salt.key.get_key(opts).list_keys()
    by_salt = {m: state for sub, state in (("minions", "accepted"), ("minions_pre", "pending"),
                                           ("minions_rejected", "rejected"), ("minions_denied", "denied"))
               for m in listed.get(sub, [])}
    assert by_salt == scan_pki(str(pki))
    assert by_salt == {"web1": "accepted", "web2": "accepted", "new1": "pending", "bad1": "rejected", "evil1": "denied"}
