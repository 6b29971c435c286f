"""Projects: ``modelzoo.toml`` lists the models a project needs, ``modelzoo.lock`` pins them.

A project is a folder holding ``modelzoo.toml``; commands find it by walking up from the
current directory (like npm and cargo), or take it from ``--project DIR`` /
``MODELZOO_PROJECT``::

    [models]
    "mobilenet_v1_1.0_224" = "^1.0"                      # name = version constraint
    "vgg16" = { version = "^1.0", variant = "notop" }    # one artifact variant ("all": every one)

    [registries]                                         # optional; before all others, in order
    team = "https://models.example.com/zoo"
    local = "./registry"                                 # relative to this file

Names containing dots must be quoted (TOML reads ``a.b = ...`` as a nested table).

``modelzoo install`` (no names) installs every listed model and writes ``modelzoo.lock``:
per model the exact version, the requested constraint and variant, the registry it came
from (name and location), the sha256 of its manifest, and per artifact the URL, size,
**sha256** (computed at install, even where the manifest publishes only md5) and the
published hash. A model from a signed registry (TUF, :mod:`modelzoo.hub.trust`) also pins
``root`` (the trusted root's version and sha256) and ``signed_targets`` (the signed sha256
of its manifest and of each artifact target). A version already locked is kept while it
satisfies the constraint. ``modelzoo install --frozen`` installs exactly the lock and
never resolves anything; for a signed registry it first checks that the root this machine
trusts is the pinned one (on a machine that never saw the registry, it fetches
``tuf/<version>.root.json`` and checks its sha256), reads the model through TUF, and
compares the signed targets with the lock, all before anything is installed.

The lock is JSON rather than TOML: stdlib ``json`` both reads and writes it (no
hand-written serialiser for a security-relevant file), it is the format of manifests and
indexes already, and with models and artifacts sorted, keys in a fixed order, two-space
indent, one value per line and no timestamps the same inputs always give the same bytes
and a diff shows one changed value per line. Paths inside the project are written
relative to it (``./registry/...``) so a lock stays valid in another checkout; the bundled
registry is written ``bundled`` (its files ``bundled:models/...``). Nothing here imports
TensorFlow.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import (
    IntegrityError,
    ModelNotFoundError,
    ModelZooError,
    OfflineError,
    ProjectError,
    RegistryError,
    UsageError,
    VersionNotFoundError,
    nearest,
)
from ..versions import best_match, is_version, parse_version, split_spec
from ._project_file import (
    Project,
    Requirement,
    check_constraint,
    find_project,
    load_project,
    project_file,
    require_project,
    save_project,
)
from .lockfile import (
    ANY,
    LOCK_FILE,
    LOCK_VERSION,
    PROJECT_FILE,
    LockedArtifact,
    LockedModel,
    Lockfile,
    check_lock,
    check_variant,
    dumps_lock,
    lock_location,
    lock_registry,
    lock_url,
    manifest_digest,
    parse_location,
    read_lock,
    satisfies,
    write_lock,
)
from .manifest import NAME_RE

__all__ = [
    "PROJECT_FILE",
    "LOCK_FILE",
    "LOCK_VERSION",
    "Requirement",
    "Project",
    "LockedArtifact",
    "LockedModel",
    "Lockfile",
    "ProjectInstall",
    "Outdated",
    "find_project",
    "load_project",
    "read_lock",
    "dumps_lock",
    "check_lock",
    "manifest_digest",
    "install_project",
    "install_lock",
    "add",
    "remove_from_project",
    "outdated",
    "resolve_in_context",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class ProjectInstall:
    """What :func:`install_project` did.

    Attributes:
        installed: ``name@version (variant)`` of every artifact added to the cache now.
        lock_changed: whether ``modelzoo.lock`` was (re)written.
    """

    project: Project
    lock: Lockfile
    installed: tuple[str, ...] = ()
    lock_changed: bool = False
    frozen: bool = False


@dataclass(frozen=True)
class Outdated:
    """One row of :func:`outdated`: the locked (or installed) version against the registries."""

    name: str
    constraint: str
    current: str | None
    wanted: str | None
    latest: str | None
    registry: str | None

    @property
    def is_outdated(self) -> bool:
        return self.current != self.latest


# --------------------------------------------------------------------------- resolution


def _registries(project: Project | None) -> list:
    from .registry import Registry, list_registries

    if project is None:
        return []
    # a location added with a trusted root stays signed when a project names it
    signed = {r.location for r in list_registries() if r.signed}
    result = []
    for name, text in project.registries:
        kind, location = parse_location(text, project.root)
        result.append(Registry(name, location, kind, "project", signed=location in signed))
    return result


def _pick(
    registry,
    name: str,
    constraint: str | None,
    names: list[str] | None = None,
    *,
    revalidate: bool = False,
):
    """Resolve ``name`` in one registry; None when it does not know the name (then its
    names are added to ``names``, for suggestions)."""
    from .registry import resolve_in

    index = registry.load_index(revalidate=revalidate)
    found = resolve_in(registry, index, name, constraint)
    if found is None and names is not None:
        names.extend(e.name for e in index.latest)
    return found


def _resolve(
    name: str, constraint: str | None, project: Project | None, *, revalidate: bool = False
):
    """Resolve through the project's registries first, then the configured ones.

    ``revalidate`` asks remote registries whether their cached index is current.
    """
    from .registry import resolve

    if constraint is not None and constraint.strip() in ANY:
        constraint = None
    names: list[str] = []
    for registry in _registries(project):
        try:
            hit = _pick(registry, name, constraint, names, revalidate=revalidate)
        except (RegistryError, OfflineError) as exc:
            if not registry.is_remote:
                raise
            logger.warning("Skipping project registry %r: %s", registry.name, exc)
            continue
        if hit is not None:
            return hit
    try:
        return resolve(name, version=constraint, revalidate=revalidate)
    except VersionNotFoundError:
        raise
    except ModelNotFoundError as exc:
        if not names:
            raise
        suggestions = nearest(name, [*names, *exc.suggestions])
        raise ModelNotFoundError(name, suggestions=suggestions) from None


def _resolve_from_cache(name: str, wanted: str | None):
    """A Resolved for an installed model no registry can provide (e.g. from a bundle)."""
    from .cache import Cache
    from .registry import Resolved

    cache = Cache()
    if not NAME_RE.match(name):
        return None
    versions = sorted({r.version for r in cache.installed(name)}, key=parse_version)
    if wanted is not None:
        exact = is_version(wanted)
        versions = [
            v
            for v in versions
            if (parse_version(v) == parse_version(wanted) if exact else satisfies(v, wanted))
        ]
    if not versions:
        return None
    chosen = best_match(versions, "latest") or versions[-1]
    manifest = cache.manifest(name, chosen)
    if manifest is None:
        return None
    record = next(r for r in cache.installed(name) if r.version == chosen)
    base_url = cache.version_dir(name, chosen).as_uri() + "/"
    return Resolved(manifest, record.registry, "", base_url, tuple(versions))


def resolve_in_context(spec: str, *, version: str | None = None, project=None):
    """Resolve ``spec`` the way :func:`modelzoo.load` should, here and now.

    Inside a project a bare name resolves to its locked version, and the project's
    registries come first. When no registry can provide the model (unknown name, or
    offline), an installed copy is used (e.g. one unpacked from a bundle).

    Returns:
        A :class:`modelzoo.hub.registry.Resolved`.
    """
    name, in_spec = split_spec(str(spec))
    name = name.lower()
    if version is not None and in_spec is not None and version.strip() != in_spec:
        raise UsageError(f"Got version {version!r} and {spec!r}: give the version once.")
    wanted = version if version is not None else in_spec
    proj = find_project(project)
    if proj is not None and wanted is None and proj.lock_path.is_file():
        locked = read_lock(proj.lock_path).get(name)
        if locked is not None:
            wanted = locked.version
    try:
        return _resolve(name, wanted, proj)
    except (ModelNotFoundError, OfflineError):
        hit = _resolve_from_cache(name, wanted)
        if hit is None:
            raise
        logger.info("%s: no registry provides it; using the installed copy", hit.manifest.spec)
        return hit


# --------------------------------------------------------------------------- installing


class _Installs:
    """Installs artifacts, remembering the new ones so a failure can remove them all."""

    def __init__(self, progress: bool | None):
        from .cache import Cache

        self.cache = Cache()
        self.progress = progress
        self.new: list[tuple[str, str, str]] = []

    def has(self, name: str, version: str, variant: str, sha256: str | None = None) -> bool:
        rec = self.cache.record(name, version, variant)
        ok = rec is not None and self.cache.is_complete(rec)
        return ok and (sha256 is None or rec.sha256 == sha256)

    def install(self, resolved, variant: str):
        from .install import ensure_installed

        m = resolved.manifest
        existed = self.has(m.name, m.version, variant)
        rec = ensure_installed(resolved, variant, progress=self.progress)
        if not existed:
            self.new.append((m.name, m.version, variant))
        return rec, existed

    def undo(self) -> None:
        for name, version, variant in reversed(self.new):
            with contextlib.suppress(ModelZooError, OSError):
                self.cache.remove(name, version=version, variant=variant)
        self.new.clear()

    def cached_exactly(self, locked: LockedModel) -> bool:
        manifest = self.cache.manifest(locked.name, locked.version)
        if manifest is None or manifest_digest(manifest) != locked.manifest_sha256:
            return False
        return all(
            self.has(locked.name, locked.version, a.variant, a.sha256) for a in locked.artifacts
        )


def _check_bytes(rec, art: LockedArtifact, spec: str, existed: bool) -> None:
    if rec.sha256 == art.sha256 and rec.size == art.size:
        return
    where = (
        f"the cache already holds other bytes for it ({rec.path}); run `modelzoo remove "
        f"{spec} --variant {art.variant}` and install again"
        if existed
        else "the registry now serves different bytes under the same version; nothing was "
        "installed. If the change is legitimate, delete the entry from modelzoo.lock"
    )
    raise IntegrityError(
        f"{spec} ({art.variant}): sha256:{rec.sha256} ({rec.size} bytes) differs from the "
        f"lock (sha256:{art.sha256}, {art.size} bytes): {where}.",
        path=str(rec.path),
        expected=f"sha256:{art.sha256}",
        actual=f"sha256:{rec.sha256}",
    )


def _entry(req: Requirement, resolved, records: dict, root: Path) -> LockedModel:
    m = resolved.manifest
    location = lock_location(resolved, root)
    artifacts = []
    for variant, rec in sorted(records.items()):
        art = m.artifacts[variant]
        artifacts.append(
            LockedArtifact(
                variant,
                lock_url(resolved.artifact_urls(variant)[0], location, root),
                rec.size,
                rec.sha256,
                str(art.hash) if art.hash else None,
                art.file_name,
                art.format,
            )
        )
    return LockedModel(
        m.name,
        m.version,
        req.constraint,
        req.variant,
        resolved.registry,
        location,
        manifest_digest(m),
        tuple(artifacts),
        resolved.trust,
    )


def _check_signed_targets(locked: LockedModel, resolved) -> None:
    """The signed targets' hashes must still be the ones the lock pins."""
    if locked.trust is None:
        return
    now = (resolved.trust or {}).get("targets", {})
    for path, sha in locked.trust["targets"].items():
        if now.get(path) != sha:
            raise IntegrityError(
                f"{locked.spec}: the signed target {path} of registry {locked.registry!r} is "
                f"sha256:{now.get(path) or 'missing'}, the lock pins sha256:{sha}; refusing to "
                "install. If the change is legitimate, run `modelzoo install` without --frozen.",
                expected=f"sha256:{sha}",
                actual=f"sha256:{now.get(path)}",
            )


def _install_exact(lock: Lockfile, root: Path, progress: bool | None) -> tuple[str, ...]:
    """Install exactly what ``lock`` pins (registries only for what the cache lacks)."""
    installs = _Installs(progress)
    plan = []
    for locked in lock.models:
        registry = lock_registry(locked, root)
        cached = installs.cached_exactly(locked)
        if locked.trust is not None:
            from .trust import ensure_pinned, is_established

            # Cached bytes need no registry, but a root this machine trusts must still be
            # the pinned one (a local check); uncached ones fetch the pinned root if needed.
            if not cached or is_established(registry.location):
                ensure_pinned(
                    registry.kind,
                    registry.location,
                    locked.trust["root_version"],
                    locked.trust["root_sha256"],
                    name=locked.registry,
                )
        if cached:
            continue
        try:
            resolved = _pick(registry, locked.name, locked.version)
        except VersionNotFoundError:
            resolved = None
        if resolved is None:
            raise ProjectError(
                f"{locked.spec} is locked to registry {locked.registry!r} "
                f"({registry.location}), which no longer lists it. Run `modelzoo install` "
                "(without --frozen) to re-resolve it."
            )
        digest = manifest_digest(resolved.manifest)
        if digest != locked.manifest_sha256:
            raise IntegrityError(
                f"{locked.spec}: the manifest in registry {locked.registry!r} changed since it "
                f"was locked ({digest}, locked {locked.manifest_sha256}); refusing to install. "
                "If the change is legitimate, run `modelzoo install` without --frozen.",
                expected=locked.manifest_sha256,
                actual=digest,
            )
        _check_signed_targets(locked, resolved)
        plan.append((locked, resolved))
    try:
        for locked, resolved in plan:
            for art in locked.artifacts:
                rec, existed = installs.install(resolved, art.variant)
                _check_bytes(rec, art, locked.spec, existed)
    except BaseException:
        installs.undo()
        raise
    return tuple(f"{n}@{v} ({var})" for n, v, var in installs.new)


def install_lock(
    path: str | os.PathLike[str], *, progress: bool | None = None
) -> tuple[Lockfile, tuple[str, ...]]:
    """Install exactly what a ``modelzoo.lock`` pins, without reading ``modelzoo.toml``.

    Used by ``modelzoo pack --lock``. Relative locations resolve against the lock's folder.

    Returns:
        The lock, and ``name@version (variant)`` of every artifact installed now.

    Raises:
        ProjectError, IntegrityError: as :func:`install_project` with ``frozen=True``.
    """
    path = Path(path)
    lock = read_lock(path)
    return lock, _install_exact(lock, path.parent.absolute(), progress)


def _install_frozen(project: Project, progress: bool | None) -> ProjectInstall:
    lock = read_lock(project.lock_path)
    problems = check_lock(project, lock)
    if problems:
        raise ProjectError(
            f"{LOCK_FILE} does not match {PROJECT_FILE}: " + "; ".join(problems) + ". Run "
            "`modelzoo install` (without --frozen) to update the lock, then commit it."
        )
    new = _install_exact(lock, project.root, progress)
    return ProjectInstall(project, lock, new, False, frozen=True)


def _locked_artifact(locked: LockedModel, variant: str) -> LockedArtifact | None:
    return next((a for a in locked.artifacts if a.variant == variant), None)


def _resolve_and_install(project: Project, progress: bool | None) -> tuple[Lockfile, tuple]:
    from .install import variants_for

    old = read_lock(project.lock_path) if project.lock_path.is_file() else Lockfile()
    installs = _Installs(progress)
    entries = []
    try:
        for req in project.models:
            locked = old.get(req.name)
            pin = locked.version if locked and satisfies(locked.version, req.constraint) else None
            if pin and locked.variant == req.variant and installs.cached_exactly(locked):
                entries.append(replace(locked, constraint=req.constraint))
                continue
            resolved = _resolve(req.name, pin or req.constraint, project)
            records = {}
            for variant in variants_for(resolved.manifest, req.variant):
                rec, existed = installs.install(resolved, variant)
                before = _locked_artifact(locked, variant) if pin else None
                if before is not None:  # same version: the bytes must not have changed
                    _check_bytes(rec, before, resolved.manifest.spec, existed)
                records[variant] = rec
            entries.append(_entry(req, resolved, records, project.root))
    except BaseException:
        installs.undo()
        raise
    new = tuple(f"{n}@{v} ({var})" for n, v, var in installs.new)
    return Lockfile(tuple(entries)), new


def install_project(
    project: Project | str | os.PathLike[str] | None = None,
    *,
    frozen: bool = False,
    progress: bool | None = None,
) -> ProjectInstall:
    """Install every model the project lists and write ``modelzoo.lock``.

    Args:
        project: a :class:`Project`, its folder or file; default: the current project.
        frozen: install exactly what the lock says (the ``npm ci`` of models): never
            resolve, never write the lock.
        progress: draw progress bars (default: unless ``MODELZOO_DISABLE_PROGRESS_BARS``).

    Raises:
        ProjectError: no project; an invalid lock; with ``frozen``, a missing lock or one
            that disagrees with ``modelzoo.toml``.
        IntegrityError: bytes (or, frozen, a manifest) differ from the lock; everything
            this call installed is removed again.
        ModelNotFoundError, OfflineError, DownloadError: as :func:`modelzoo.install`.
    """
    proj = require_project(project)
    if frozen:
        return _install_frozen(proj, progress)
    lock, new = _resolve_and_install(proj, progress)
    changed = write_lock(proj.lock_path, lock)
    return ProjectInstall(proj, lock, new, changed)


def add(
    spec: str,
    *,
    variant: str | None = None,
    project: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> ProjectInstall:
    """Add ``NAME[@CONSTRAINT]`` to the project, install it and update the lock.

    Without a constraint, ``^<latest version>`` is written. Without a project,
    ``modelzoo.toml`` is created in ``project`` (or the current folder). The project file
    is only changed when the install succeeds.

    Raises:
        UsageError: a malformed name or constraint.
        ModelNotFoundError, VersionNotFoundError, VariantNotFoundError: as :func:`resolve`.
    """
    name, constraint = split_spec(spec)
    name = name.lower()
    if not NAME_RE.match(name):
        raise UsageError(
            f"Invalid model name {name!r}: names use a-z, 0-9, '.', '_', '-'. "
            "Run `modelzoo search` to list models."
        )
    try:
        constraint = check_constraint(constraint, spec, "version") if constraint else None
        variant = check_variant(variant, spec, "variant")
    except ProjectError as exc:
        raise UsageError(str(exc)) from None
    path = project_file(project) or Path.cwd() / PROJECT_FILE
    proj = load_project(path) if path.is_file() else Project(path.parent.absolute())
    if constraint is None:
        latest = _resolve(name, None, proj).version
        constraint = latest if parse_version(latest).prerelease else f"^{latest}"
    others = [r for r in proj.models if r.name != name]
    reqs = sorted([*others, Requirement(name, constraint, variant)], key=lambda r: r.name)
    proj = replace(proj, models=tuple(reqs))
    lock, new = _resolve_and_install(proj, progress)
    save_project(proj, name=name)
    changed = write_lock(proj.lock_path, lock)
    return ProjectInstall(proj, lock, new, changed)


def remove_from_project(name: str, *, project: str | os.PathLike[str] | None = None) -> bool:
    """Drop ``name`` from ``modelzoo.toml`` and ``modelzoo.lock`` (the cache is untouched).

    Returns:
        False when there is no project or it does not list ``name``.
    """
    proj = find_project(project)
    name = name.lower()
    if proj is None or proj.requirement(name) is None:
        return False
    proj = replace(proj, models=tuple(r for r in proj.models if r.name != name))
    save_project(proj, name=name)
    if proj.lock_path.is_file():
        lock = read_lock(proj.lock_path)
        write_lock(proj.lock_path, Lockfile(tuple(m for m in lock.models if m.name != name)))
    return True


def outdated(project: str | os.PathLike[str] | None = None) -> list[Outdated]:
    """Compare locked versions (outside a project: installed ones) with the registries.

    Returns:
        One row per model: ``current`` (locked/installed), ``wanted`` (the highest version
        the constraint allows), ``latest``; ``wanted``/``latest`` are None when no
        registry has the model.
    """
    proj = find_project(project)
    if proj is not None:
        lock = read_lock(proj.lock_path) if proj.lock_path.is_file() else Lockfile()
        rows = [
            (r.name, r.constraint, getattr(lock.get(r.name), "version", None)) for r in proj.models
        ]
    else:
        from .cache import list_installed

        current: dict[str, str] = {}
        for rec in list_installed():
            best = current.get(rec.name)
            if best is None or parse_version(rec.version) > parse_version(best):
                current[rec.name] = rec.version
        rows = [(n, "*", v) for n, v in sorted(current.items())]
    result = []
    for name, constraint, current_version in rows:
        try:
            latest = _resolve(name, None, proj, revalidate=True)  # never a stale "latest"
        except ModelNotFoundError:
            result.append(Outdated(name, constraint, current_version, None, None, None))
            continue
        versions = list(latest.versions)
        wanted = latest.version if constraint in ANY else best_match(versions, constraint)
        result.append(
            Outdated(name, constraint, current_version, wanted, latest.version, latest.registry)
        )
    return result
