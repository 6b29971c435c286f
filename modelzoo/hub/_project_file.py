"""The project file, ``modelzoo.toml``: find it, parse it, and edit it in place.

Owned by :mod:`modelzoo.hub.project`, which documents the format. Reading uses the
standard library's ``tomllib``; edits made by ``modelzoo add`` / ``remove`` go through
``tomlkit``, which keeps comments and layout written by hand and changes only the one
``[models]`` entry concerned.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import config
from ..errors import ProjectError
from ..files import atomic_write
from ..versions import matches
from .lockfile import LOCK_FILE, PROJECT_FILE, check_variant, project_error
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


def check_constraint(constraint: Any, source: Any, where: str) -> str:
    """``constraint`` stripped (empty means ``*``), or ProjectError when it cannot parse."""
    if not isinstance(constraint, str):
        raise project_error(
            source, f"{where}: expected a version constraint string, got {constraint!r}"
        )
    text = constraint.strip() or "*"
    try:
        matches("0.0.0", text)
    except ValueError as exc:
        raise project_error(source, f"{where}: {exc}") from None
    return text


def _parse_project(text: str, *, root: Path, source: str) -> Project:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise project_error(source, f"not valid TOML ({exc}). Fix the syntax.") from None
    unknown = sorted(set(data) - {"models", "registries"})
    if unknown:
        raise project_error(
            source, f"unknown table or key {unknown[0]!r} (known: models, registries)"
        )
    models = data.get("models", {})
    registries = data.get("registries", {})
    if not isinstance(models, dict) or not isinstance(registries, dict):
        raise project_error(source, "[models] and [registries] must be tables")
    reqs = []
    for name, value in models.items():
        where = f"models.{name}"
        if not NAME_RE.match(name):
            raise project_error(
                source,
                f"invalid model name {name!r}: names use a-z, 0-9, '.', '_', '-' "
                "(lowercase, starting with a letter or digit)",
            )
        if isinstance(value, dict):
            extra = sorted(set(value) - {"version", "variant"})
            if extra:
                raise project_error(
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
            raise project_error(
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
        raise project_error(path, f"cannot read it ({exc})") from exc
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


def _model_value(req: Requirement) -> Any:
    import tomlkit

    if req.variant is None:
        return req.constraint
    # Parsed rather than built, to keep the spaced ``{ version = ..., variant = ... }`` style.
    text = f"v = {{ version = {json.dumps(req.constraint)}, variant = {json.dumps(req.variant)} }}"
    return tomlkit.parse(text)["v"]


def _quoted(name: str):
    # New keys are written quoted ("resnet50" = ...), as the generated file always was.
    from tomlkit.items import KeyType, SingleKey

    return SingleKey(name, t=KeyType.Basic)


def _new_document(project: Project):
    import tomlkit

    doc = tomlkit.parse(_NEW_PROJECT)
    if project.registries:
        registries = tomlkit.table()
        for name, location in project.registries:
            registries[_quoted(name)] = location
        doc["registries"] = registries
    doc["models"] = tomlkit.table()
    return doc


def save_project(project: Project, *, name: str) -> None:
    """Write ``project`` to its file, changing only the entry of ``name``.

    The file is edited as a TOML document (``tomlkit``): comments, ordering and layout
    written by hand survive, whichever TOML form the ``[models]`` entries take (lines,
    sub-tables, dotted keys, an inline table).

    Raises:
        ProjectError: the edited document would not read back as ``project`` (nothing is
            written then), or the file cannot be written.
    """
    import tomlkit

    path = project.path
    try:
        old = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = None
    doc = _new_document(project) if old is None else tomlkit.parse(old)
    if "models" not in doc:
        doc["models"] = tomlkit.table()
    models = doc["models"]
    req = project.requirement(name)
    if req is None:
        models.pop(name, None)
    elif name in models:
        models[name] = _model_value(req)  # keeps the key as written and its comment
    else:
        models[_quoted(name)] = _model_value(req)
    new = tomlkit.dumps(doc)
    try:
        same = _parse_project(new, root=project.root, source=str(path)).models == project.models
    except ProjectError:
        same = False
    if not same:
        raise project_error(path, f"cannot update the entry of {name!r}; edit the file by hand")
    try:
        atomic_write(path, new)
    except OSError as exc:
        raise project_error(path, f"cannot write it ({exc.strerror or exc})") from exc
