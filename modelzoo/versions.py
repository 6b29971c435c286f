"""Semantic versions (``1.2.3``, ``1.2.3-rc.1``) and version constraints (``^1.2``, ``>=1,<2``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

__all__ = ["Version", "parse_version", "is_version", "matches", "best_match", "split_spec"]

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


@total_ordering
@dataclass(frozen=True)
class Version:
    """A parsed semantic version; ordering follows semver 2.0 (build metadata ignored)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + self.build
        return text

    def _key(self):
        # A release sorts after its prereleases; numeric identifiers sort below alphanumeric.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, not self.prerelease, pre)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()


def parse_version(text: str) -> Version:
    """Parse ``text`` as a semantic version.

    Raises:
        ValueError: when ``text`` is not ``MAJOR.MINOR.PATCH[-PRE][+BUILD]``.
    """
    m = _SEMVER.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"not a semantic version (MAJOR.MINOR.PATCH): {text!r}")
    pre = tuple(m.group(4).split(".")) if m.group(4) else ()
    return Version(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre, m.group(5) or "")


def is_version(text: str) -> bool:
    """Whether ``text`` is a valid semantic version."""
    # the same test parse_version makes, without building a Version (indexes call this a lot)
    return isinstance(text, str) and _SEMVER.match(text.strip()) is not None


def _partial(text: str) -> tuple[Version, int]:
    """Parse ``1``, ``1.2``, ``1.2.x`` or ``1.2.3``: the version and how many parts were given."""
    text = text.strip()
    if is_version(text):
        return parse_version(text), 3
    parts = text.split(".")
    # npm-style wildcards: "1.x" and "1.2.*" mean the same as "1" and "1.2"
    while len(parts) > 1 and parts[-1] in ("x", "X", "*"):
        parts.pop()
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(
            f"bad version in constraint: {text!r}; use 1.2.3, 1.2, 1, 1.x, ^1.2, ~1.2, >=1,<2 or *"
        )
    given = len(parts)
    if given == 3:  # digits only but not semver, e.g. a leading zero
        raise ValueError(f"bad version in constraint: {text!r} (no leading zeros)")
    return parse_version(".".join(parts + ["0"] * (3 - given))), given


def _one(version: Version, clause: str) -> bool:
    clause = clause.strip()
    if clause in ("", "*", "latest"):
        return not version.prerelease
    for op in (">=", "<=", "==", "!=", ">", "<", "=", "^", "~"):
        if clause.startswith(op):
            bound, given = _partial(clause[len(op) :])
            break
    else:
        op = "=="
        bound, given = _partial(clause)
        if given < 3:  # a bare "1.2" means "any 1.2.x"
            op = "~"
    if op in ("==", "="):
        return version == bound
    if op == "!=":
        return version != bound
    if op == ">=":
        return version >= bound
    if op == "<=":
        return version <= bound
    if op == ">":
        return version > bound
    if op == "<":
        return version < bound
    if op == "~":  # same major.minor (or same major when only major given)
        upper = (
            Version(bound.major + 1, 0, 0)
            if given == 1
            else Version(bound.major, bound.minor + 1, 0)
        )
        return bound <= version < upper
    # "^": compatible with, following the left-most non-zero part
    if bound.major > 0 or given == 1:
        upper = Version(bound.major + 1, 0, 0)
    elif bound.minor > 0 or given == 2:
        upper = Version(0, bound.minor + 1, 0)
    else:
        upper = Version(0, 0, bound.patch + 1)
    return bound <= version < upper


def matches(version: str | Version, constraint: str) -> bool:
    """Whether ``version`` satisfies ``constraint``.

    Constraints are comma-separated clauses, all of which must hold: ``1.2.3`` (exact),
    ``1.2`` or ``1.2.x`` (any 1.2.x), ``^1.2`` (>=1.2.0,<2.0.0), ``~1.2`` (>=1.2.0,<1.3.0),
    ``>=1,<2``, ``*`` or ``latest`` (any release). Prereleases match only exact or explicit
    prerelease bounds.

    Raises:
        ValueError: when the constraint cannot be parsed.
    """
    v = version if isinstance(version, Version) else parse_version(version)
    clauses = [c for c in constraint.split(",")] if constraint else [""]
    if v.prerelease and not any("-" in c for c in clauses):
        return False
    return all(_one(v, c) for c in clauses)


def best_match(versions: list[str], constraint: str = "latest") -> str | None:
    """The highest of ``versions`` satisfying ``constraint``, or None."""
    ok = [v for v in versions if is_version(v) and matches(v, constraint)]
    return max(ok, key=parse_version) if ok else None


def split_spec(spec: str) -> tuple[str, str | None]:
    """Split ``name@version`` into ``(name, version-or-constraint)``; no ``@`` gives None."""
    name, sep, version = spec.strip().partition("@")
    return name.strip(), (version.strip() or None) if sep else None
