"""Optional DC policy for bridged jobs: which functions and targets a DC runs from above.

Like Salt's ``publisher_acl``, but enforced by the DC on every job that comes down the job
stream, after the signature, dedupe and expiry checks and before the local publish.  A job
the policy refuses is never published; the DC reports it upward as ``refused`` with the reason.

Semantics (all patterns are case-sensitive shell globs, :func:`fnmatch.fnmatchcase`):

* functions: every function of the job (a compound job has several) must match
  ``allow_functions`` (when set) and none may match ``deny_functions``.  Deny wins.
* targets: the job's target expression as given (``tgt``), not the minions it resolves to.
  A list target (``-L``) is checked element by element: every element must be allowed and
  none denied.  A compound target given as a list of words is checked as one expression.
* target types: when ``allow_target_types`` is set, a job whose ``tgt_type`` is not in it is
  refused.  Nodegroups reach a DC as ``compound`` (the MoM expands them), ranges as ``list``.

``None`` for an allow list means "no restriction"; an empty allow list allows nothing.
This module is pure: no I/O, no Salt.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Mapping

# tgt_type values Salt's CkMinions knows (``_check_<type>_minions``) in the supported releases.
TARGET_TYPES = frozenset(
    "glob pcre list grain grain_pcre pillar pillar_pcre pillar_exact compound compound_pillar_exact "
    "ipcidr range nodegroup resource managing_minion".split()
)
_COMPOUND = ("compound", "compound_pillar_exact")


def _first_match(value: str, patterns: tuple[str, ...]) -> str | None:
    for pattern in patterns:
        if fnmatchcase(value, pattern):
            return pattern
    return None


@dataclass(frozen=True)
class Policy:
    """Allow/deny lists of one DC.  ``None`` allow lists: no restriction."""

    allow_functions: tuple[str, ...] | None = None
    deny_functions: tuple[str, ...] = ()
    allow_targets: tuple[str, ...] | None = None
    deny_targets: tuple[str, ...] = ()
    allow_target_types: tuple[str, ...] | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> "Policy":
        return cls(
            allow_functions=getattr(settings, "allow_functions", None),
            deny_functions=getattr(settings, "deny_functions", ()) or (),
            allow_targets=getattr(settings, "allow_targets", None),
            deny_targets=getattr(settings, "deny_targets", ()) or (),
            allow_target_types=getattr(settings, "allow_target_types", None),
        )

    @property
    def active(self) -> bool:
        """False when the policy allows everything (the default)."""
        return not (self.allow_functions is None and not self.deny_functions and self.allow_targets is None
                    and not self.deny_targets and self.allow_target_types is None)

    def check(self, load: Mapping[str, Any]) -> str | None:
        """The reason ``load`` (a decoded publish load) is refused, or None if it may run."""
        if not self.active:
            return None
        return self._check_tgt_type(load) or self._check_functions(load.get("fun")) or self._check_targets(load)

    def _check_tgt_type(self, load: Mapping[str, Any]) -> str | None:
        tgt_type = load.get("tgt_type") or "glob"
        if self.allow_target_types is not None and tgt_type not in self.allow_target_types:
            return f"target type {tgt_type!r} is not in allow_target_types"
        return None

    def _check_functions(self, fun: Any) -> str | None:
        funs = fun if isinstance(fun, list) else [fun]
        if not funs:
            return "job names no function"
        return _check_names("function", "functions", funs, self.allow_functions, self.deny_functions)

    def _check_targets(self, load: Mapping[str, Any]) -> str | None:
        if self.allow_targets is None and not self.deny_targets:
            return None
        tgt = load.get("tgt")
        tgt_type = load.get("tgt_type") or "glob"
        if isinstance(tgt, list) and tgt_type in _COMPOUND:
            tgt = " ".join(str(word) for word in tgt)
        targets = tgt if isinstance(tgt, list) else [tgt]
        if not targets:
            return "job has an empty target"
        return _check_names("target", "targets", targets, self.allow_targets, self.deny_targets)


def _check_names(what: str, option: str, names: list[Any], allow: Any, deny: Any) -> str | None:
    """The refusal reason for the first name that is denied or not allowed (deny wins)."""
    for name in names:
        if not isinstance(name, str):
            return f"{what} {name!r} is not a string"
        denied = _first_match(name, deny)
        if denied is not None:
            return f"{what} {name!r} is denied by deny_{option} ({denied!r})"
        if allow is not None and _first_match(name, allow) is None:
            return f"{what} {name!r} is not in allow_{option}"
    return None
