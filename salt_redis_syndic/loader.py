"""Salt ``salt.loader`` entry point: tell Salt where our modules live.

Salt (``salt.loader._module_dirs``) calls a *plain function* entry point with no
arguments; when it returns a dict, ``result[ext_type]`` is a list of
directories searched for that loader type ("engines", "returners", "runners").
Salt then keeps only the paths that exist, and a module synced into
``extension_modules`` (``saltutil.sync_all``) wins over ours.

Two layouts are supported:

* regular install (wheel): the modules are shipped as package data in
  ``salt_redis_syndic/_salt/{engines,returners,runners}/``;
* editable install or source checkout: the repo-root directories
  ``_engines/``, ``_returners/``, ``_runners/`` next to this package.

Do not import salt or anything heavy here: Salt calls this for every loader it
builds.
"""

from __future__ import annotations

import os

__all__ = ["KINDS", "get_loader_dirs"]

# Salt loader type -> repo-root directory name (the file_roots sync layout).
KINDS = {
    "engines": "_engines",
    "returners": "_returners",
    "runners": "_runners",
}

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def _dir_for(kind: str) -> str | None:
    candidates = (
        os.path.join(_PKG_DIR, "_salt", kind),  # installed wheel
        os.path.join(os.path.dirname(_PKG_DIR), KINDS[kind]),  # editable / checkout
    )
    for path in candidates:
        if os.path.isdir(path):
            return path
    return None


def get_loader_dirs() -> dict[str, list[str]]:
    """Return ``{"engines": [dir], "returners": [dir], "runners": [dir]}``.

    Each list holds the one directory where that kind of module was found, or
    is empty if neither layout is present (Salt then simply finds nothing).
    """
    result: dict[str, list[str]] = {}
    for kind in KINDS:
        path = _dir_for(kind)
        result[kind] = [path] if path else []
    return result
