"""Packaging: the salt.loader entry point, the wheel/sdist contents, both install modes.

These tests fail (never skip) when a Salt module is missing: the package is only
useful if Salt can find ``redis_syndic`` engines, returners and runners.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.functional

REPO_ROOT = Path(__file__).resolve().parents[2]
KINDS = {"engines": "_engines", "returners": "_returners", "runners": "_runners"}
DIST = "salt-redis-syndic"
ENTRY_POINT = "salt_redis_syndic.loader:get_loader_dirs"
def _run(cmd, cwd, timeout=300):
    proc = subprocess.run(
        [str(c) for c in cmd],
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{cmd} failed (rc={proc.returncode})\n"
        f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    )
    return proc


def _master_conf(tmp_path: Path) -> Path:
    """A master config file whose every writable path is under tmp_path."""
    root = tmp_path / "salt"
    conf = root / "etc" / "master"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        textwrap.dedent(
            f"""\
            id: packaging-test-master
            root_dir: {root}
            cachedir: {root}/cache
            extension_modules: {root}/extmods
            pki_dir: {root}/pki
            sock_dir: {root}/sock
            log_file: {root}/master.log
            key_logfile: {root}/key.log
            engines: []
            """
        )
    )
    return conf


def _master_opts(tmp_path: Path) -> dict:
    import salt.config

    opts = salt.config.master_config(str(_master_conf(tmp_path)))
    assert opts["extension_modules"] == str(tmp_path / "salt" / "extmods")
    return opts


@pytest.fixture(scope="module")
def source_tree(tmp_path_factory) -> Path:
    """A clean copy of every tracked file of the checkout (tests, bench and lab/ included).

    Builds then run on what a user would build from the repo, yet never write build/ or
    *.egg-info into it; the packaging configuration alone must keep the non-product code out.
    """
    dest = tmp_path_factory.mktemp("src") / "salt-redis-syndic"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, tracked.decode().split("\0")):
        src = REPO_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    assert (dest / "lab" / "daemons.py").is_file() and (dest / "tests").is_dir()
    return dest


@pytest.fixture(scope="module")
def wheel_path(source_tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", out, "."], cwd=source_tree)
    wheels = sorted(out.glob("salt_redis_syndic-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


# --- (a) the entry point callable --------------------------------------------


def test_get_loader_dirs_returns_existing_dirs_with_modules():
    import types

    from salt_redis_syndic.loader import get_loader_dirs

    # Salt only calls plain functions (types.FunctionType) with no arguments.
    assert isinstance(get_loader_dirs, types.FunctionType)
    dirs = get_loader_dirs()
    assert set(dirs) == set(KINDS)
    for kind, paths in dirs.items():
        assert not isinstance(paths, str)
        assert len(paths) == 1, (kind, paths)
        path = Path(paths[0])
        assert path.is_dir(), (kind, path)
        assert (path / "redis_syndic.py").is_file(), f"{path}/redis_syndic.py is missing"
        # An __init__.py would be loaded by Salt as a module named "__init__".
        assert not (path / "__init__.py").exists(), path


def test_entry_point_is_registered():
    eps = [
        ep
        for ep in metadata.entry_points(group="salt.loader")
        if ep.value == ENTRY_POINT
    ]
    assert eps, (
        f"no salt.loader entry point {ENTRY_POINT!r}: install the package "
        f"(python3 -m pip install -e '.[test]')"
    )
    assert eps[0].name == "redis_syndic"
    assert metadata.version(DIST) == "0.1.0"


# --- (b) Salt's own loader finds the modules through the entry point ---------


def test_salt_loader_finds_modules_via_entry_point(tmp_path):
    import salt.loader

    from salt_redis_syndic.loader import get_loader_dirs

    opts = _master_opts(tmp_path)
    # Nothing is synced: whatever Salt finds comes from the entry point.
    extmods = Path(opts["extension_modules"])
    assert not any(extmods.glob("*/redis_syndic.py"))

    dirs = get_loader_dirs()
    for kind in KINDS:
        searched = salt.loader._module_dirs(opts, kind)
        assert dirs[kind][0] in searched, (kind, searched)

    engines = salt.loader.engines(opts, {}, {}, {})
    assert "redis_syndic.start" in engines, engines.missing_fun_string("redis_syndic.start")

    returners = salt.loader.returners(opts, {})
    assert "redis_syndic.event_return" in returners, returners.missing_fun_string(
        "redis_syndic.event_return"
    )

    runners = salt.loader.runner(opts)
    assert "redis_syndic.status" in runners, runners.missing_fun_string(
        "redis_syndic.status"
    )


# --- (c) what a build ships --------------------------------------------------


def test_wheel_contents(wheel_path):
    with zipfile.ZipFile(wheel_path) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
        meta = zf.read(f"{dist_info}/METADATA").decode()

    assert wheel_path.name.startswith("salt_redis_syndic-0.1.0-")
    assert "salt_redis_syndic/__init__.py" in names
    assert "salt_redis_syndic/loader.py" in names
    for kind in KINDS:
        assert f"salt_redis_syndic/_salt/{kind}/redis_syndic.py" in names, sorted(names)
        assert f"salt_redis_syndic/_salt/{kind}/__init__.py" not in names
    # Product code only: the lab, tests and benchmarks stay out, and no module of the package is
    # missing (a subpackage not listed in setup.cfg would silently be left out).
    assert all(n.startswith(("salt_redis_syndic/", f"{dist_info}/")) for n in names), sorted(
        n for n in names if not n.startswith(("salt_redis_syndic/", f"{dist_info}/")))
    package = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "salt_redis_syndic").rglob("*.py")}
    assert package <= names, sorted(package - names)
    assert "[salt.loader]" in entry_points
    assert f"redis_syndic = {ENTRY_POINT}" in entry_points
    assert "Version: 0.1.0" in meta
    assert "Requires-Python: >=3.10" in meta
    requires = sorted(line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")
                      and "extra ==" not in line)
    # No Salt: the package runs inside a master, and `salt-pip install` (pip --target) would put a
    # second Salt into a onedir's extras directory.  Floors every Salt 3006+ onedir meets.
    assert requires == ["cryptography>=41", "msgpack>=1.0", "redis>=4.5"], requires


def test_sdist_contents(source_tree, tmp_path):
    out = tmp_path / "sdist"
    out.mkdir()
    _run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))",
            out,
        ],
        cwd=source_tree,
    )
    (sdist,) = out.glob("salt*redis*syndic-0.1.0.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for name in ("setup.cfg", "pyproject.toml", "salt_redis_syndic/loader.py"):
        assert name in names, sorted(names)
    for src_dir in KINDS.values():
        assert f"{src_dir}/redis_syndic.py" in names, sorted(names)


# --- regular (non-editable) install: dirs resolve inside site-packages -------


def test_wheel_install_resolves_installed_copies(wheel_path, tmp_path):
    # Install the wheel alone into a target dir that comes first on PYTHONPATH: the probe
    # then imports the installed copy (not the repo's editable one) while salt and the other
    # dependencies come from the running environment, whatever it is (a venv on CI).
    site = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
          "--target", str(site), wheel_path], cwd=tmp_path)
    conf = _master_conf(tmp_path)
    probe = textwrap.dedent(
        """\
        import json, sys
        import salt.config
        import salt.loader
        import salt_redis_syndic
        from salt_redis_syndic.loader import get_loader_dirs
        opts = salt.config.master_config(sys.argv[1])
        engines = salt.loader.engines(opts, {}, {}, {})
        returners = salt.loader.returners(opts, {})
        runners = salt.loader.runner(opts)
        print(json.dumps({
            "pkg": salt_redis_syndic.__file__,
            "dirs": get_loader_dirs(),
            "engines": "redis_syndic.start" in engines,
            "returners": "redis_syndic.event_return" in returners,
            "runners": "redis_syndic.status" in runners,
        }))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", probe, conf], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    site = Path(os.path.realpath(site))
    assert Path(os.path.realpath(result["pkg"])).parent == site / "salt_redis_syndic", result
    for kind in KINDS:
        assert len(result["dirs"][kind]) == 1, result
        path = result["dirs"][kind][0]
        assert Path(os.path.realpath(path)) == site / "salt_redis_syndic" / "_salt" / kind, result
    assert result["engines"] and result["returners"] and result["runners"], result
