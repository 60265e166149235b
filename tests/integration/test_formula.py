"""The Salt formula (``redis_syndic/``) renders a master config that runs the bridge.

The formula is applied for real with ``salt-call --local`` into temporary roots: a minimal
minion config whose ``file_roots`` serves the repository's ``redis_syndic/`` (so
``salt://redis_syndic`` resolves) and whose ``pillar_roots`` holds the test's pillar. The
file root is a temp dir with a symlink to ``<repo>/redis_syndic`` rather than the repo root
itself: Salt walks its whole file_roots on every call, and the repo's ``.venv`` made that
~2.5 s per ``salt-call``. Pillar flags keep it off the
machine: ``pip.install: False`` (no reinstall), ``restart_master: False`` or a harmless
``restart_cmd`` (nothing is restarted), ``conf_dir`` under the temp root. The install state is
checked rendered (``state.show_sls``) instead of run.

The generated ``master.d/redis_syndic.conf`` is then checked against what the lab
(:mod:`lab`) writes for a working bridge, and finally used to start a real
MoM and DC master: the MoM engine comes up, the DC shows alive in ``redis_syndic.status``,
and a job goes through.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import (
    Lab,
    LabError,
    find_script,
    generate_ed25519_keypair,
    parse_json_output,
    wait_until,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ENGINE_UP_MOM = "redis_syndic: engine starting as mom"
# Keys of a master config that belong to the bridge (the rest is the lab's plumbing).
MOM_KEYS = {"redis_syndic", "engines", "order_masters", "syndic_wait"}
DC_KEYS = {"redis_syndic", "engines", "event_return", "event_return_whitelist"}
PLACEHOLDER_REDIS = "redis://redis.invalid:6379/0"  # replaced by the lab's Redis when started


# --------------------------------------------------------------------------------------------
# salt-call --local into a temp root
# --------------------------------------------------------------------------------------------


@dataclass
class FormulaRoot:
    """One ``salt-call --local`` environment: config dir, pillar, and a fake ``/etc/salt``."""

    root: Path
    minion_id: str

    @property
    def conf_dir(self) -> Path:
        return self.root / "minion-conf"

    @property
    def pillar_dir(self) -> Path:
        return self.root / "pillar"

    @property
    def etc_salt(self) -> Path:
        """What the formula treats as /etc/salt (pillar ``conf_dir``)."""
        return self.root / "etc" / "salt"

    @property
    def master_conf(self) -> Path:
        return self.etc_salt / "master.d" / "redis_syndic.conf"

    @property
    def pki_dir(self) -> Path:
        return self.etc_salt / "pki" / "master"

    def state_tree(self) -> Path:
        """A file root holding only ``redis_syndic`` -> ``<repo>/redis_syndic``."""
        tree = self.root / "srv"
        tree.mkdir(parents=True, exist_ok=True)
        link = tree / "redis_syndic"
        if not link.is_symlink():
            link.symlink_to(REPO / "redis_syndic", target_is_directory=True)
        return tree

    def write(self, pillar_sls: str) -> FormulaRoot:
        run = self.root / "run"
        config = {
            "id": self.minion_id,
            "file_client": "local",
            "root_dir": str(run),
            "cachedir": str(run / "cache"),
            "pki_dir": str(run / "pki"),
            "sock_dir": str(run / "sock"),
            "extension_modules": str(run / "extmods"),
            "pidfile": str(run / "minion.pid"),
            "log_file": str(run / "minion.log"),
            "log_level_logfile": "info",
            "file_roots": {"base": [str(self.state_tree())]},
            "pillar_roots": {"base": [str(self.pillar_dir)]},
            # No sync of the repo's _engines/... into this throwaway minion, and no DNS
            # lookups for the fqdns grain (they cost seconds per salt-call).
            "autoload_dynamic_modules": False,
            "enable_fqdns_grains": False,
        }
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.pillar_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "minion").write_text(yaml.safe_dump(config))
        (self.pillar_dir / "top.sls").write_text("base:\n  '*':\n    - redis_syndic\n")
        (self.pillar_dir / "redis_syndic.sls").write_text(pillar_sls)
        return self

    def call(self, *args: str, pillar: dict[str, Any] | None = None) -> Any:
        """``salt-call --local -c <conf> <args> --out=json`` → the ``local`` value."""
        argv = [find_script("salt-call"), "--local", "-c", str(self.conf_dir), "--out=json",
                "--retcode-passthrough", *args]  # fmt: skip
        if pillar is not None:
            argv.append(f"pillar={json.dumps(pillar)}")
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        return parse_json_output(result.stdout, result)["local"]

    def apply(self, sls: str, pillar: dict[str, Any] | None = None) -> dict[str, Any]:
        """``state.apply sls``; every state must succeed. Returns results by state id."""
        out = self.call("state.apply", sls, pillar=pillar)
        assert isinstance(out, dict), out
        by_id = {ret["__id__"]: ret for ret in out.values()}
        failed = {sid: ret["comment"] for sid, ret in by_id.items() if ret["result"] is not True}
        assert not failed, failed
        return by_id

    def read_conf(self) -> dict[str, Any]:
        return yaml.safe_load(self.master_conf.read_text())


def local_paths(root: FormulaRoot) -> dict[str, Any]:
    """Formula parameters that put the config under the temp root, owned by this user."""
    return {
        "conf_dir": str(root.etc_salt),
        "config_user": pwd.getpwuid(os.getuid()).pw_name,
        "config_group": grp.getgrgid(os.getgid()).gr_name,
    }


def base_pillar(root: FormulaRoot, bridge: dict[str, Any], **params: Any) -> str:
    """Pillar of a test: the formula kept off the machine, ``bridge`` as given."""
    data = {
        **local_paths(root),
        "pip": {"install": False},
        "restart_master": False,
        "bridge": bridge,
    }
    data.update(params)
    return yaml.safe_dump({"redis_syndic": data})


def run_parallel(*calls: Callable[[], Any]) -> list[Any]:
    """Run independent salt-calls at once (each is ~1.5 s, mostly Python start-up)."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [f.result() for f in [pool.submit(c) for c in calls]]


# --------------------------------------------------------------------------------------------
# what the lab writes for a working bridge
# --------------------------------------------------------------------------------------------


def lab_reference_configs() -> dict[str, dict[str, Any]]:
    """The master configs a default bridged lab would write, by role, without starting it.

    Uses the lab's planning steps only (no subnet lock, nothing bound or spawned).
    """
    ref = Lab(dcs=("east",), minions_per_dc=1)
    try:
        ref.subnet = 10  # addresses only appear in the config; nothing binds them here
        ref._plan_redis()  # noqa: SLF001 - planning only: picks a port, starts nothing
        ref._plan_salt()  # noqa: SLF001
        return {"mom": ref.master("mom").config, "dc": ref.master("east").config}
    finally:
        ref.stop()  # never started: only removes its temp root


def assert_matches_lab(conf: dict[str, Any], reference: dict[str, Any], keys: set[str]) -> None:
    """``conf`` is exactly the bridge part of a lab config, its block a superset of the lab's."""
    assert set(conf) == keys, sorted(conf)
    for key in keys - {"redis_syndic"}:
        assert conf[key] == reference[key], (key, conf[key], reference[key])
    block, ref_block = conf["redis_syndic"], reference["redis_syndic"]
    missing = set(ref_block) - set(block)
    assert not missing, f"the lab's bridge needs {sorted(missing)}, the formula wrote {block}"
    assert block["role"] == ref_block["role"]


# --------------------------------------------------------------------------------------------
# fixtures: a MoM and a DC applied once per module
# --------------------------------------------------------------------------------------------


@dataclass
class Applied:
    root: FormulaRoot
    results: dict[str, Any]
    conf: dict[str, Any]
    block: dict[str, Any]  # the pillar's bridge block


@pytest.fixture(scope="module")
def mom_keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The MoM signing key (the operator's, given to the MoM as a path) and its public half."""
    keys = tmp_path_factory.mktemp("keys")
    generate_ed25519_keypair(keys / "mom.pem", keys / "mom.pub")
    generate_ed25519_keypair(keys / "dc-east.pem", keys / "dc-east.pub")  # the DC's uplink key
    return keys / "mom.pem", keys / "mom.pub"


@pytest.fixture(scope="module")
def applied(
    tmp_path_factory: pytest.TempPathFactory, mom_keypair: tuple[Path, Path]
) -> dict[str, Applied]:
    """``state.apply redis_syndic`` for a MoM pillar and a DC pillar (in parallel)."""
    private, public = mom_keypair
    mom = FormulaRoot(tmp_path_factory.mktemp("mom"), "mom")
    dc = FormulaRoot(tmp_path_factory.mktemp("dc"), "east-master")
    blocks = {
        "mom": {
            "role": "mom",
            "redis_url": PLACEHOLDER_REDIS,
            "signing_key": str(private),
            "job_ttl": 300,
            "dc_keys": {"east": (private.parent / "dc-east.pub").read_text()},  # PEM, pre-accepted
        },
        "dc": {
            "role": "dc",
            "dc": "east",
            "redis_url": PLACEHOLDER_REDIS,
            "trusted_keys": [public.read_text()],  # PEM text, written to a file by the formula
            "signing_key": str(private.parent / "dc-east.pem"),
            "heartbeat_interval": 1,
        },
    }
    # The MoM restarts "salt-master" with a harmless command, to see the restart trigger.
    mom.write(base_pillar(mom, blocks["mom"], restart_master=True,
                          service={"restart_cmd": f"touch {mom.root / 'restarted'}"}))  # fmt: skip
    dc.write(base_pillar(dc, blocks["dc"], trusted_keys_to_files=True))
    results = run_parallel(lambda: mom.apply("redis_syndic"), lambda: dc.apply("redis_syndic"))
    return {
        role: Applied(root, res, root.read_conf(), blocks[role])
        for role, root, res in zip(("mom", "dc"), (mom, dc), results)
    }


@pytest.fixture(scope="module")
def lab_configs() -> dict[str, dict[str, Any]]:
    return lab_reference_configs()


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def test_install_renders_pip_into_salts_python(tmp_path: Path) -> None:
    """install.sls: pip.installed of the pillar's package; no bin_env unless the pillar gives one (Salt's
    pip module then runs salt-pip on a onedir, the Python running Salt otherwise)."""
    root = FormulaRoot(tmp_path, "mom").write(
        yaml.safe_dump({"redis_syndic": {"pip": {"name": "salt-redis-syndic==0.1.0"}}})
    )
    explicit = {"redis_syndic": {"pip": {"bin_env": "/opt/saltstack/salt/bin/python3",
                                         "options": {"upgrade": True}}}}  # fmt: skip
    # one root: sequential calls (parallel salt-calls would share its cachedir)
    shown = root.call("state.show_sls", "redis_syndic.package.install")
    shown_explicit = root.call("state.show_sls", "redis_syndic.package.install", pillar=explicit)
    no_role = root.call("state.show_sls", "redis_syndic.config.file")
    state = shown["redis-syndic-package-install-pip-installed"]
    args = {k: v for item in state["pip"] if isinstance(item, dict) for k, v in item.items()}
    assert "installed" in state["pip"]
    assert args["name"] == "salt-redis-syndic==0.1.0"
    assert "bin_env" not in args, args
    state = shown_explicit["redis-syndic-package-install-pip-installed"]
    args = {k: v for item in state["pip"] if isinstance(item, dict) for k, v in item.items()}
    assert args["bin_env"] == "/opt/saltstack/salt/bin/python3" and args["upgrade"] is True
    # a pillar without a role fails the render with one line, no config is written
    assert "bridge:role must be mom or dc" in json.dumps(no_role), no_role


def test_mom_config_is_what_the_bridge_needs(
    applied: dict[str, Applied], lab_configs: dict[str, dict[str, Any]]
) -> None:
    mom = applied["mom"]
    assert mom.conf == {
        "redis_syndic": mom.block,
        "engines": [{"redis_syndic": {}}],
        "order_masters": True,
        "syndic_wait": 0,
    }
    assert_matches_lab(mom.conf, lab_configs["mom"], MOM_KEYS)
    assert stat.S_IMODE(mom.root.master_conf.stat().st_mode) == 0o600
    # the config changed, so the restart fired (in the background); no pip, no sync
    assert "redis-syndic-service-running-cmd-run" in mom.results
    assert not any("pip" in sid or "sync" in sid for sid in mom.results)
    marker = mom.root.root / "restarted"
    wait_until(marker.exists, 10, "the restart command of the first run")


def test_dc_config_is_what_the_bridge_needs(
    applied: dict[str, Applied], lab_configs: dict[str, dict[str, Any]], mom_keypair
) -> None:
    dc = applied["dc"]
    key_file = dc.root.pki_dir / "redis_syndic_trusted_1.pub"
    assert dc.conf == {
        "redis_syndic": {**dc.block, "trusted_keys": [str(key_file)]},
        "engines": [{"redis_syndic": {}}],
        "event_return": "redis_syndic",
        "event_return_whitelist": ["salt/job/*/ret/*"],
    }
    assert_matches_lab(dc.conf, lab_configs["dc"], DC_KEYS)
    assert key_file.read_text() == mom_keypair[1].read_text()
    assert stat.S_IMODE(dc.root.master_conf.stat().st_mode) == 0o600


def test_second_run_changes_nothing_and_clean_removes(applied: dict[str, Applied]) -> None:
    """Idempotent (no restart without a change); clean removes the config and key files."""
    mom, dc = applied["mom"].root, applied["dc"].root
    wait_until((mom.root / "restarted").exists, 10, "the restart command of the first run")
    (mom.root / "restarted").unlink()
    again_mom, again_dc = run_parallel(lambda: mom.apply("redis_syndic"),
                                       lambda: dc.apply("redis_syndic"))  # fmt: skip
    for results in (again_mom, again_dc):
        assert {sid: r["changes"] for sid, r in results.items() if r["changes"]} == {}
    restart = again_mom["redis-syndic-service-running-cmd-run"]
    assert restart["result"] is True and "onchanges" in restart["comment"], restart
    time.sleep(0.5)
    assert not (mom.root / "restarted").exists(), "restarted although nothing changed"

    # clean into copies, so the files stay for the live test
    copies = []
    for src in (mom, dc):
        root = FormulaRoot(src.root.parent / f"{src.root.name}-clean", src.minion_id)
        shutil.copytree(src.root, root.root, symlinks=True)
        pillar = yaml.safe_load((src.pillar_dir / "redis_syndic.sls").read_text())
        marker = root.root / "restarted-by-clean"
        pillar["redis_syndic"].update(conf_dir=str(root.etc_salt), restart_master=True,
                                      service={"restart_cmd": f"touch {marker}"})  # fmt: skip
        root.write(yaml.safe_dump(pillar))
        copies.append(root)
    cleaned = run_parallel(*[(lambda r=r: r.apply("redis_syndic.clean")) for r in copies])
    for root, results in zip(copies, cleaned):
        assert "redis-syndic-config-clean-file-absent" in results
        assert root.master_conf.parent.is_dir() and not root.master_conf.exists()
        assert not list(root.pki_dir.glob("redis_syndic_trusted_*"))
        wait_until((root.root / "restarted-by-clean").exists, 10, "the restart after clean")
    assert "redis-syndic-config-clean-trusted-key-1-file-absent" in cleaned[1]


def test_pillar_example_renders_a_mom_and_a_dc(tmp_path: Path) -> None:
    """pillar.example (role switch by minion id, TLS, PEM trusted key) gives valid configs."""
    from salt_redis_syndic.config import load_settings
    from salt_redis_syndic.security.signing import Verifier

    example = (REPO / "pillar.example").read_text()
    roots = {
        "mom": FormulaRoot(tmp_path / "mom", "mom.example.net").write(example),
        "dc": FormulaRoot(tmp_path / "dc", "salt-east.example.net").write(example),
    }
    # the DC keeps its trusted key inline here (the fixture's DC covers key files)
    inline = {"mom": {}, "dc": {"trusted_keys_to_files": False}}

    def apply(role: str) -> Any:
        root = roots[role]
        pillar = {"redis_syndic": {**local_paths(root), **inline[role]}}
        return root.apply("redis_syndic.config", pillar=pillar)

    run_parallel(lambda: apply("mom"), lambda: apply("dc"))
    mom, dc = roots["mom"].read_conf(), roots["dc"].read_conf()
    assert set(mom) == MOM_KEYS and mom["order_masters"] is True and mom["syndic_wait"] == 0
    assert set(dc) == DC_KEYS and dc["event_return"] == "redis_syndic"
    for conf in (mom, dc):
        block = conf["redis_syndic"]
        assert block["redis_url"].startswith("rediss://") and block["ssl_ca_certs"]
    assert dc["redis_syndic"]["dc"] == "east"
    (pem,) = dc["redis_syndic"]["trusted_keys"]
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n") and pem in example.replace("    ", "")
    # the library accepts both blocks (unknown options, bad values, unreadable keys fail)
    for conf, role in ((mom, "mom"), (dc, "dc")):
        opts = {**conf, "id": role, "cachedir": str(tmp_path / "cache"), "pki_dir": str(tmp_path)}
        settings = load_settings(opts)
        assert settings.role == role
    Verifier(settings.trusted_keys)  # the inline PEM survived YAML: a valid Ed25519 key


def test_generated_configs_run_a_bridge(
    applied: dict[str, Applied], make_lab: Callable[..., Lab]
) -> None:
    """A MoM and a DC master started from the generated files: engines up, DC alive, job through."""

    def split(conf: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        block = {k: v for k, v in conf["redis_syndic"].items() if k != "redis_url"}
        return block, {k: v for k, v in conf.items() if k != "redis_syndic"}

    mom_block, mom_opts = split(applied["mom"].conf)
    dc_block, dc_opts = split(applied["dc"].conf)
    lab = make_lab(dcs=("east",), minions_per_dc=1, mom_bridge=mom_block, dc_bridge=dc_block,
                   mom_opts=mom_opts, dc_opts=dc_opts)  # fmt: skip
    # the masters run the generated configs (plus the lab's Redis URL and paths)
    for name, conf in (("mom", applied["mom"].conf), ("east", applied["dc"].conf)):
        running = lab.master(name).config
        assert {**running["redis_syndic"], "redis_url": PLACEHOLDER_REDIS} == conf["redis_syndic"]
        for key in set(conf) - {"redis_syndic"}:
            assert running[key] == conf[key], key

    wait_until(lambda: ENGINE_UP_MOM in lab.log("mom"), 30, "the MoM engine to start")

    def east_alive() -> bool:
        try:
            status = lab.salt_run_json("redis_syndic.status", timeout=30)
        except LabError:
            return False
        return isinstance(status, dict) and status.get("east", {}).get("alive") is True

    wait_until(east_alive, 30, "DC east alive in salt-run redis_syndic.status", interval=1)
    lab.wait_bridge(timeout=45)  # a job signed by the MoM, run by the DC, result back


def test_file_roots_deployment_syncs_and_restarts_only_on_change(tmp_path: Path) -> None:
    """sync_modules: the master's modules are synced from its file_roots; the restart fires
    when the config or a module changed, and not on a run that changed nothing."""
    root = FormulaRoot(tmp_path, "mom")
    # the master whose modules are synced: file_roots serving the repo's Salt modules
    tree, master_root = tmp_path / "master-srv", tmp_path / "master"
    tree.mkdir()
    for kind in ("_engines", "_returners", "_runners"):
        (tree / kind).symlink_to(REPO / kind, target_is_directory=True)
    (master_root / "cache" / "proc").mkdir(parents=True)  # a master that has run once
    root.etc_salt.mkdir(parents=True)
    (root.etc_salt / "master").write_text(yaml.safe_dump({
        "root_dir": str(master_root), "cachedir": str(master_root / "cache"),
        "pki_dir": str(master_root / "pki"), "sock_dir": str(master_root / "sock"),
        "extension_modules": str(master_root / "extmods"),
        "log_file": str(master_root / "master.log"), "file_roots": {"base": [str(tree)]},
    }))  # fmt: skip
    marker = tmp_path / "restarted"
    root.write(base_pillar(root, {"role": "mom", "redis_url": PLACEHOLDER_REDIS},
                           sync_modules=True, restart_master=True,
                           service={"restart_cmd": f"touch {marker}"}))  # fmt: skip
    first = root.apply("redis_syndic")
    sync_id = "redis-syndic-package-sync-cmd-script"
    assert "synced: engines.redis_syndic" in first[sync_id]["comment"]
    assert (master_root / "extmods" / "engines" / "redis_syndic.py").exists()
    wait_until(marker.exists, 10, "the restart after the first run")
    marker.unlink()
    second = root.apply("redis_syndic")
    assert {sid: r["changes"] for sid, r in second.items() if r["changes"]} == {}
    assert second[sync_id]["comment"] == "master modules already in sync"
    time.sleep(0.5)
    assert not marker.exists(), "restarted although nothing changed"


def test_everything_on_compiles_in_test_mode(tmp_path: Path) -> None:
    """pip, sync and restart all enabled: init.sls and clean.sls compile and their
    requisites resolve (``test=True``: nothing is installed, removed or restarted)."""
    root = FormulaRoot(tmp_path, "mom")
    marker = tmp_path / "restarted"
    root.write(base_pillar(root, {"role": "mom", "redis_url": PLACEHOLDER_REDIS},
                           pip={"install": True, "name": "salt-redis-syndic"},
                           sync_modules=True, restart_master=True,
                           service={"restart_cmd": f"touch {marker}"}))  # fmt: skip
    for sls, expected in (
        ("redis_syndic", {"redis-syndic-package-install-pip-installed",
                          "redis-syndic-package-sync-cmd-script",
                          "redis-syndic-config-file-file-managed",
                          "redis-syndic-service-running-cmd-run"}),
        ("redis_syndic.clean", {"redis-syndic-config-clean-file-absent",
                                "redis-syndic-package-clean-pip-removed",
                                "redis-syndic-service-clean-cmd-run"}),
    ):  # fmt: skip
        out = root.call("state.apply", sls, "test=True")
        assert isinstance(out, dict), out
        by_id = {ret["__id__"]: ret for ret in out.values()}
        assert set(by_id) == expected
        assert not [r["comment"] for r in by_id.values() if r["result"] is False], by_id
    assert not marker.exists()
