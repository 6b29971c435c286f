"""The project file, ``modelzoo.toml``: find it, parse it, and edit it line by line.

Owned by :mod:`modelzoo.hub.project`, which documents the format. Edits made by ``modelzoo
add`` / ``remove`` touch only the one ``[models]`` line concerned, so comments and layout
written by hand survive.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import config
from ..errors import ProjectError
from ..files import atomic_write
from ..versions import matches
from .lockfile import LOCK_FILE, PROJECT_FILE, check_variant
from .manifest import NAME_RE

__all__ = [
    "Requirement",
    "Project",
    "check_constraint",
    "load_project",
    "project_file",
    "find_project",
    "require_project",
    "save_project",
]

logger = logging.getLogger(__name__)

_NEW_PROJECT = (
    "# The pretrained models this project needs. Edit by hand, or with\n"
    "# `modelzoo add NAME[@CONSTRAINT]` and `modelzoo remove NAME`; `modelzoo install`\n"
    "# installs them and pins the exact versions and hashes in modelzoo.lock.\n"
)


@dataclass(frozen=True)
class Requirement:
    """One model a project needs: ``name``, a version ``constraint``, optional ``variant``."""

    name: str
    constraint: str = "*"
    variant: str | None = None


@dataclass(frozen=True)
class Project:
    """A parsed ``modelzoo.toml``.

    Attributes:
        root: the folder holding it (absolute).
        models: the requirements, sorted by name.
        registries: ``(name, location)`` pairs as written, highest priority first.
    """

    root: Path
    models: tuple[Requirement, ...] = ()
    registries: tuple[tuple[str, str], ...] = ()

    @property
    def path(self) -> Path:
        return self.root / PROJECT_FILE

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    def requirement(self, name: str) -> Requirement | None:
        """The requirement for ``name``, or None."""
        return next((r for r in self.models if r.name == name), None)


# --------------------------------------------------------------------------- modelzoo.toml


def _fail(source: Any, message: str) -> ProjectError:
    return ProjectError(f"{source}: {message}")


def check_constraint(constraint: Any, source: Any, where: str) -> str:
    """``constraint`` stripped (empty means ``*``), or ProjectError when it cannot parse."""
    if not isinstance(constraint, str):
        raise _fail(source, f"{where}: expected a version constraint string, got {constraint!r}")
    text = constraint.strip() or "*"
    try:
        matches("0.0.0", text)
    except ValueError as exc:
        raise _fail(source, f"{where}: {exc}") from None
    return text


def _parse_project(text: str, *, root: Path, source: str) -> Project:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(source, f"not valid TOML ({exc}). Fix the syntax.") from None
    unknown = sorted(set(data) - {"models", "registries"})
    if unknown:
        raise _fail(source, f"unknown table or key {unknown[0]!r} (known: models, registries)")
    models = data.get("models", {})
    registries = data.get("registries", {})
    if not isinstance(models, dict) or not isinstance(registries, dict):
        raise _fail(source, "[models] and [registries] must be tables")
    reqs = []
    for name, value in models.items():
        where = f"models.{name}"
        if not NAME_RE.match(name):
            raise _fail(
                source,
                f"invalid model name {name!r}: names use a-z, 0-9, '.', '_', '-' "
                "(lowercase, starting with a letter or digit)",
            )
        if isinstance(value, dict):
            extra = sorted(set(value) - {"version", "variant"})
            if extra:
                raise _fail(
                    source,
                    f"{where}: unknown keys {extra} (known: version, variant); quote names "
                    'that contain dots: "mobilenet_v1_1.0_224" = "^1.0"',
                )
            constraint = check_constraint(value.get("version", "*"), source, where)
            reqs.append(
                Requirement(name, constraint, check_variant(value.get("variant"), source, where))
            )
        else:
            reqs.append(Requirement(name, check_constraint(value, source, where)))
    regs = []
    for name, location in registries.items():
        if not NAME_RE.match(name) or not isinstance(location, str) or not location.strip():
            raise _fail(
                source,
                f'registries.{name}: expected name = "folder or http(s) URL", got {location!r}',
            )
        regs.append((name, location.strip()))
    return Project(root, tuple(sorted(reqs, key=lambda r: r.name)), tuple(regs))


def load_project(path: str | os.PathLike[str]) -> Project:
    """Read and validate ``modelzoo.toml`` (``path`` is the file or its folder).

    Raises:
        ProjectError: missing, unreadable or invalid, naming the file and the entry.
    """
    path = Path(path)
    if path.is_dir():
        path = path / PROJECT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(
            f"{path} does not exist. Create it with `modelzoo add NAME` in that folder."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot read it ({exc})") from exc
    return _parse_project(text, root=path.parent.absolute(), source=str(path))


def project_file(project: str | os.PathLike[str] | None) -> Path | None:
    """Where the project file is (or would be created): explicit > env > walk up from CWD."""
    explicit = config.project(project)
    if explicit is not None:
        return explicit if explicit.suffix == ".toml" else explicit / PROJECT_FILE
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder / PROJECT_FILE
    return None


def find_project(project: str | os.PathLike[str] | None = None) -> Project | None:
    """The current project: ``project`` > ``MODELZOO_PROJECT`` > walking up from the CWD.

    Returns:
        The parsed project, or None when there is none (no explicit location given).

    Raises:
        ProjectError: an explicitly given project has no ``modelzoo.toml``, or it is invalid.
    """
    path = project_file(project)
    return None if path is None else load_project(path)


def require_project(project: Project | str | os.PathLike[str] | None) -> Project:
    """``project`` itself, or the one :func:`find_project` finds; ProjectError if none."""
    if isinstance(project, Project):
        return project
    found = find_project(project)
    if found is None:
        raise ProjectError(
            f"No {PROJECT_FILE} in {Path.cwd()} or any folder above it. Create one with "
            "`modelzoo add NAME`, pass --project DIR, or set MODELZOO_PROJECT."
        )
    return found


def _toml_str(text: str) -> str:
    # JSON string escapes (\" \\ \n \uXXXX) are valid TOML basic-string escapes
    return json.dumps(text, ensure_ascii=False)


def _model_line(req: Requirement) -> str:
    if req.variant is None:
        return f"{_toml_str(req.name)} = {_toml_str(req.constraint)}\n"
    return (
        f"{_toml_str(req.name)} = {{ version = {_toml_str(req.constraint)}, "
        f"variant = {_toml_str(req.variant)} }}\n"
    )


def _render_project(project: Project) -> str:
    parts = [_NEW_PROJECT]
    if project.registries:
        parts.append("\n[registries]\n")
        parts += [f"{_toml_str(n)} = {_toml_str(loc)}\n" for n, loc in project.registries]
    parts.append("\n[models]\n")
    parts += [_model_line(r) for r in project.models]
    return "".join(parts)


_HEADER = re.compile(r"^\s*\[")
_KEY = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")


def _line_key(line: str) -> str | None:
    m = _KEY.match(line)
    if not m:
        return None
    key = m.group(1)
    if key.startswith('"'):
        with contextlib.suppress(ValueError):
            return json.loads(key)
        return None
    return key[1:-1] if key.startswith("'") else key


def _edit_models(text: str, name: str, line: str | None) -> str:
    """Replace, insert (``line``) or delete (None) the ``[models]`` entry of ``name``,
    leaving every other line -- comments included -- as it was."""
    lines = text.splitlines(keepends=True)
    start = next(
        (i for i, s in enumerate(lines) if re.match(r"^\s*\[\s*models\s*\]\s*(#.*)?$", s)), None
    )
    if start is None:
        if line is None:
            return text
        sep = "" if not text or text.endswith("\n") else "\n"
        return f"{text}{sep}\n[models]\n{line}"
    end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
    for i in range(start + 1, end):
        if _line_key(lines[i]) == name:
            lines[i : i + 1] = [line] if line is not None else []
            return "".join(lines)
    if line is not None:
        last = start
        for i in range(start + 1, end):
            if lines[i].strip() and not lines[i].lstrip().startswith("#"):
                last = i
        if not lines[last].endswith("\n"):
            lines[last] += "\n"
        lines.insert(last + 1, line)
    return "".join(lines)


def save_project(project: Project, *, name: str) -> None:
    """Write ``project`` to its file, editing only the line of ``name`` when possible."""
    path = project.path
    try:
        old = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = None
    req = project.requirement(name)
    if old is None:
        new = _render_project(project)
    else:
        new = _edit_models(old, name, _model_line(req) if req else None)
        try:
            ok = _parse_project(new, root=project.root, source=str(path)).models == project.models
        except ProjectError:
            ok = False
        if not ok:  # e.g. entries written as [models."name"] sub-tables
            logger.warning("%s: rewriting the whole file; comments in it are dropped", path)
            new = _render_project(project)
    atomic_write(path, new.encode("utf-8"))
