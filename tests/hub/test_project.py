"""Projects: modelzoo.toml + modelzoo.lock, against real registry folders and a real server."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from _registry_fixture import TestRegistry
from _server import LocalServer
from typer.testing import CliRunner

from modelzoo.cli import app
from modelzoo.errors import (
    IntegrityError,
    ModelNotFoundError,
    ProjectError,
    UsageError,
    VariantNotFoundError,
)
from modelzoo.hub import project as mp
from modelzoo.hub.cache import Cache

HEADER = "# models for the pacman detector\n"


@pytest.fixture(autouse=True)
def _no_project_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MODELZOO_PROJECT", raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)


@pytest.fixture
def proj(tmp_path, monkeypatch):
    """A project folder with its own registry folder inside, as the current directory."""
    root = tmp_path / "proj"
    reg = TestRegistry(root / "registry")
    monkeypatch.chdir(root)
    return root, reg


def write_toml(root: Path, models: str, registries: str = 'local = "./registry"\n') -> Path:
    path = root / "modelzoo.toml"
    text = HEADER + (f"[registries]\n{registries}\n" if registries else "")
    path.write_text(text + "[models]\n" + models, encoding="utf-8")
    return path


def lock_doc(root: Path) -> dict:
    return json.loads((root / "modelzoo.lock").read_text(encoding="utf-8"))


def fresh_cache(tmp_path, monkeypatch, name: str) -> Cache:
    monkeypatch.setenv("MODELZOO_HOME", str(tmp_path / name))
    return Cache()


def nothing_installed(cache: Cache) -> None:
    assert cache.records() == []
    assert not cache.blobs_dir.exists() or list(cache.blobs_dir.iterdir()) == []


# --------------------------------------------------------------------------- the project file


def test_project_is_found_by_walking_up_or_from_env_or_argument(proj, tmp_path, monkeypatch):
    root, _ = proj
    write_toml(root, '"tiny" = "^1.0"\n')
    deep = root / "src" / "pkg"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    found = mp.find_project()
    assert found.root == root and found.models == (mp.Requirement("tiny", "^1.0"),)
    assert found.registries == (("local", "./registry"),)

    other = tmp_path / "other"
    other.mkdir()
    write_toml(other, '"x" = "*"\n', registries="")
    monkeypatch.setenv("MODELZOO_PROJECT", str(other))
    assert mp.find_project().root == other
    assert mp.find_project(root / "modelzoo.toml").root == root  # argument beats env
    monkeypatch.setenv("MODELZOO_PROJECT", str(tmp_path / "missing"))
    with pytest.raises(ProjectError, match="does not exist"):
        mp.find_project()
    monkeypatch.delenv("MODELZOO_PROJECT")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert mp.find_project() is None
    with pytest.raises(ProjectError, match="No modelzoo.toml"):
        mp.install_project()


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ('"tiny" = \n', "not valid TOML"),
        ('"Tiny" = "^1"\n', "invalid model name 'Tiny'"),
        ('mobilenet_v1_1.0_224 = "^1"\n', "quote names that contain dots"),
        ('"tiny" = "^x.1"\n', "bad version in constraint"),
        ('"tiny" = 1\n', "expected a version constraint string"),
        ('"tiny" = { version = "^1", variant = "../x" }\n', "invalid variant"),
        ('"tiny" = { version = "^1", hash = "x" }\n', "unknown keys ['hash']"),
        ('"tiny" = "^1"\n[tools]\nx = 1\n', "unknown table or key 'tools'"),
    ],
)
def test_invalid_project_files_are_refused_with_the_entry_named(proj, models, message):
    root, _ = proj
    path = write_toml(root, models)
    with pytest.raises(ProjectError, match=re.escape(message)) as info:
        mp.load_project(root)
    assert str(path) in str(info.value)


def test_invalid_registry_entry(proj):
    root, _ = proj
    write_toml(root, '"tiny" = "^1"\n', registries="local = 3\n")
    with pytest.raises(ProjectError, match="registries.local"):
        mp.load_project(root)


# --------------------------------------------------------------------------- install + lock


def test_install_writes_a_lock_with_sha256_even_where_only_md5_is_published(proj):
    root, reg = proj
    art = reg.publish("tiny", "1.0.0", variants={"full": 3000}, hash_algo="md5")["full"]
    reg.publish("tiny", "1.1.0", variants={"full": 3000})
    reg.publish("other", "0.2.0", variants={"full": 1000, "notop": 500})
    write_toml(root, '"tiny" = "~1.0"\n"other" = { version = "*", variant = "all" }\n')

    result = mp.install_project()
    assert result.lock_changed and not result.frozen
    assert set(result.installed) == {
        "tiny@1.0.0 (full)", "other@0.2.0 (full)", "other@0.2.0 (notop)"
    }  # fmt: skip
    doc = lock_doc(root)
    assert doc["lockfile_version"] == 1 and list(doc["models"]) == ["other", "tiny"]
    tiny = doc["models"]["tiny"]
    manifest = json.loads((reg.model_dir("tiny", "1.0.0") / "manifest.json").read_text())
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    assert tiny == {
        "version": "1.0.0",
        "constraint": "~1.0",
        "variant": None,
        "registry": {"name": "local", "location": "./registry"},
        "manifest": "sha256:" + hashlib.sha256(canonical.encode()).hexdigest(),
        "artifacts": {
            "full": {
                "url": "./registry/models/tiny/1.0.0/full.h5",
                "size": 3000,
                "sha256": art.sha256,
                "published_hash": f"md5:{art.md5}",
                "file_name": "full.h5",
                "format": "h5",
            }
        },
    }
    assert list(doc["models"]["other"]["artifacts"]) == ["full", "notop"]
    # the lock equals what read_lock + dumps_lock produce: one canonical form
    text = (root / "modelzoo.lock").read_bytes()
    assert mp.dumps_lock(mp.read_lock(root / "modelzoo.lock")) == text
    # installed artifacts are the locked bytes
    rec = Cache().record("tiny", "1.0.0", "full")
    assert rec.sha256 == art.sha256 and rec.path.read_bytes() == art.data
    # a second install changes nothing and needs no registry
    (root / "registry" / "index.json").unlink()
    again = mp.install_project()
    assert again.installed == () and not again.lock_changed
    assert (root / "modelzoo.lock").read_bytes() == text


def test_lock_bytes_are_deterministic(proj, tmp_path, monkeypatch):
    root, reg = proj
    reg.publish("tiny", "1.0.0", variants={"full": 2000})
    reg.publish("zeta", "2.0.0", variants={"full": 1000, "notop": 100}, hash_algo=None)
    reg.publish("alpha", "0.1.0", variants={"full": 700}, hash_algo="md5")
    write_toml(root, '"tiny" = "^1"\n"zeta" = { variant = "all" }\n"alpha" = "*"\n')
    mp.install_project()
    first = (root / "modelzoo.lock").read_bytes()

    # again from scratch: no lock, an empty cache, models listed in another order
    (root / "modelzoo.lock").unlink()
    fresh_cache(tmp_path, monkeypatch, "home2")
    write_toml(root, '"alpha" = "*"\n"zeta" = { variant = "all" }\n"tiny" = "^1"\n')
    mp.install_project()
    assert (root / "modelzoo.lock").read_bytes() == first
    assert b"installed_at" not in first and str(tmp_path).encode() not in first


def test_locked_version_is_kept_until_the_constraint_excludes_it(proj):
    root, reg = proj
    reg.publish("tiny", "1.0.0", variants={"full": 100})
    write_toml(root, '"tiny" = "^1.0"\n')
    mp.install_project()
    reg.publish("tiny", "1.1.0", variants={"full": 200})
    reg.publish("tiny", "2.0.0", variants={"full": 300})
    assert mp.install_project().lock.get("tiny").version == "1.0.0"

    rows = mp.outdated()
    assert [(r.name, r.current, r.wanted, r.latest, r.registry) for r in rows] == [
        ("tiny", "1.0.0", "1.1.0", "2.0.0", "local")
    ]
    assert rows[0].is_outdated

    write_toml(root, '"tiny" = "^2"\n')
    result = mp.install_project()
    assert result.lock.get("tiny").version == "2.0.0" and result.lock_changed
    assert mp.outdated()[0].is_outdated is False


def test_frozen_install_reproduces_the_lock_in_a_fresh_cache(proj, tmp_path, monkeypatch):
    root, reg = proj
    old = reg.publish("tiny", "1.0.0", variants={"full": 1500}, hash_algo="md5")["full"]
    write_toml(root, '"tiny" = "^1"\n')
    mp.install_project()
    reg.publish("tiny", "1.1.0", variants={"full": 1600})  # newer, but the lock says 1.0.0
    lock_before = (root / "modelzoo.lock").read_bytes()

    cache = fresh_cache(tmp_path, monkeypatch, "ci-cache")
    result = mp.install_project(frozen=True)
    assert result.frozen and result.installed == ("tiny@1.0.0 (full)",)
    assert [r.spec for r in cache.installed()] == ["tiny@1.0.0"]
    assert cache.installed()[0].path.read_bytes() == old.data
    assert (root / "modelzoo.lock").read_bytes() == lock_before
    # everything cached: no registry needed at all
    os.rename(root / "registry", root / "registry-gone")
    assert mp.install_project(frozen=True).installed == ()


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ('"tiny" = "^1"\n"other" = "*"\n', "other is in modelzoo.toml but not in modelzoo.lock"),
        ('"other" = "*"\n', "tiny is in modelzoo.lock but no longer in modelzoo.toml"),
        ('"tiny" = "^2"\n', "locked version 1.0.0 does not satisfy '\\^2'"),
        ('"tiny" = { version = "^1", variant = "notop" }\n', "asks for variant notop"),
    ],
)
def test_frozen_install_refuses_a_lock_that_disagrees(proj, tmp_path, monkeypatch, models, message):
    root, reg = proj
    reg.publish("tiny", "1.0.0", variants={"full": 100, "notop": 50})
    reg.publish("tiny", "2.0.0", variants={"full": 100})
    reg.publish("other", "1.0.0", variants={"full": 100})
    write_toml(root, '"tiny" = "^1"\n')
    mp.install_project()
    write_toml(root, models)
    cache = fresh_cache(tmp_path, monkeypatch, "ci")
    with pytest.raises(ProjectError, match=message) as info:
        mp.install_project(frozen=True)
    assert "Run `modelzoo install` (without --frozen)" in str(info.value)
    nothing_installed(cache)


def test_frozen_install_needs_a_valid_lock(proj):
    root, reg = proj
    reg.publish("tiny", "1.0.0", variants={"full": 100})
    write_toml(root, '"tiny" = "^1"\n')
    with pytest.raises(ProjectError, match="does not exist. Run `modelzoo install`"):
        mp.install_project(frozen=True)
    (root / "modelzoo.lock").write_text("{not json", encoding="utf-8")
    with pytest.raises(ProjectError, match="not a readable JSON lockfile"):
        mp.install_project(frozen=True)
    (root / "modelzoo.lock").write_text('{"lockfile_version": 9, "models": {}}')
    with pytest.raises(ProjectError, match="expected lockfile_version 1, got 9"):
        mp.install_project()
    (root / "modelzoo.lock").unlink()
    mp.install_project()
    doc = lock_doc(root)
    doc["models"]["tiny"]["artifacts"]["full"]["sha256"] = "xyz"
    (root / "modelzoo.lock").write_text(json.dumps(doc))
    with pytest.raises(ProjectError, match=r"models.tiny.artifacts.full.sha256 must be 64"):
        mp.install_project(frozen=True)


def test_frozen_install_detects_changed_artifact_bytes(proj, tmp_path, monkeypatch):
    """A registry serving other bytes under a locked version: nothing is installed."""
    root, reg = proj
    reg.publish("first", "1.0.0", variants={"full": 900})
    tofu = reg.publish("tiny", "1.0.0", variants={"full": 1000}, hash_algo=None)["full"]
    write_toml(root, '"first" = "*"\n"tiny" = "*"\n')
    mp.install_project()

    # the artifact has no published hash, so only the lock knows its sha256
    changed = bytearray(tofu.data)
    changed[10] ^= 0xFF
    tofu.path.write_bytes(bytes(changed))
    cache = fresh_cache(tmp_path, monkeypatch, "ci")
    with pytest.raises(IntegrityError, match="differs from the lock") as info:
        mp.install_project(frozen=True)
    assert info.value.expected == f"sha256:{tofu.sha256}"
    assert info.value.actual == "sha256:" + hashlib.sha256(changed).hexdigest()
    nothing_installed(cache)  # "first" was installed, then rolled back

    # a non-frozen install refuses too: same version, other bytes
    with pytest.raises(IntegrityError, match="differs from the lock"):
        mp.install_project()
    nothing_installed(cache)


def test_frozen_install_detects_a_republished_manifest(proj, tmp_path, monkeypatch):
    root, reg = proj
    reg.publish("tiny", "1.0.0", variants={"full": 1000})
    write_toml(root, '"tiny" = "*"\n')
    mp.install_project()
    # the publisher replaces the file *and* its hash under the same version
    reg.publish("tiny", "1.0.0", variants={"full": 1000}, seed="evil")
    cache = fresh_cache(tmp_path, monkeypatch, "ci")
    with pytest.raises(IntegrityError, match="the manifest in registry 'local' changed"):
        mp.install_project(frozen=True)
    nothing_installed(cache)


def test_frozen_install_detects_bytes_that_break_the_published_hash(proj, tmp_path, monkeypatch):
    root, reg = proj
    art = reg.publish("tiny", "1.0.0", variants={"full": 1000})["full"]
    write_toml(root, '"tiny" = "*"\n')
    mp.install_project()
    art.path.write_bytes(b"x" * 1000)
    cache = fresh_cache(tmp_path, monkeypatch, "ci")
    with pytest.raises(IntegrityError):
        mp.install_project(frozen=True)
    nothing_installed(cache)


def test_frozen_install_when_the_locked_version_is_gone(proj, tmp_path, monkeypatch):
    root, reg = proj
    reg.publish("tiny", "1.0.0", variants={"full": 100})
    write_toml(root, '"tiny" = "*"\n')
    mp.install_project()
    reg.publish("tiny", "1.1.0", variants={"full": 100})
    import shutil

    shutil.rmtree(reg.model_dir("tiny", "1.0.0"))
    reg.write_index()
    fresh_cache(tmp_path, monkeypatch, "ci")
    with pytest.raises(ProjectError, match="no longer lists it"):
        mp.install_project(frozen=True)


def test_the_bundled_registry_is_written_portably(tmp_path, monkeypatch):
    from modelzoo.hub.registry import bundled_registry_path

    digits = "mobilenet_v1_0.25_32_digits"
    root = tmp_path / "app"
    root.mkdir()
    monkeypatch.chdir(root)
    (root / "modelzoo.toml").write_text(f'[models]\n"{digits}" = "^1"\n')
    mp.install_project()
    text = (root / "modelzoo.lock").read_text()
    entry = json.loads(text)["models"][digits]
    assert entry["registry"] == {"name": "bundled", "location": "bundled"}
    assert entry["artifacts"]["full"]["url"] == f"bundled:models/{digits}/1.0.0/full.h5"
    assert str(bundled_registry_path()) not in text and str(tmp_path) not in text
    cache = fresh_cache(tmp_path, monkeypatch, "ci")
    assert mp.install_project(frozen=True).installed == (f"{digits}@1.0.0 (full)",)
    assert [r.registry for r in cache.installed()] == ["bundled"]


# --------------------------------------------------------------------------- add / remove


def test_add_and_remove_edit_only_their_own_line(proj):
    root, reg = proj
    reg.publish("tiny", "1.0.0", variants={"full": 100})
    reg.publish("other", "0.2.0", variants={"full": 100, "notop": 50})
    reg.publish("other", "0.3.0-rc.1", variants={"full": 100})
    write_toml(root, '# the small one\n"tiny" = "^1.0"  # pinned for the demo\n')
    before = (root / "modelzoo.toml").read_text()

    result = mp.add("other")
    text = (root / "modelzoo.toml").read_text()
    assert text == before + '"other" = "^0.2.0"\n'
    assert [m.name for m in result.lock.models] == ["other", "tiny"]
    assert lock_doc(root)["models"]["other"]["version"] == "0.2.0"

    mp.add("other@0.2", variant="notop")  # replaces the line in place
    text = (root / "modelzoo.toml").read_text()
    assert text == before + '"other" = { version = "0.2", variant = "notop" }\n'
    assert list(lock_doc(root)["models"]["other"]["artifacts"]) == ["notop"]

    assert mp.remove_from_project("other") is True
    assert (root / "modelzoo.toml").read_text() == before
    assert list(lock_doc(root)["models"]) == ["tiny"]
    assert mp.remove_from_project("other") is False
    assert Cache().record("other", "0.2.0", "full") is not None  # the cache is untouched


def test_add_failures_change_nothing(proj):
    root, reg = proj
    reg.publish("tiny", "1.0.0", variants={"full": 100})
    path = write_toml(root, '"tiny" = "^1.0"\n')
    mp.install_project()
    before = (path.read_bytes(), (root / "modelzoo.lock").read_bytes())
    with pytest.raises(ModelNotFoundError, match="Unknown model 'tinny'.*'tiny'"):
        mp.add("tinny")
    with pytest.raises(VariantNotFoundError):
        mp.add("tiny", variant="notop")
    with pytest.raises(UsageError, match="bad version"):
        mp.add("tiny@^1.x.y")
    with pytest.raises(UsageError, match="Invalid model name"):
        mp.add("../tiny")
    assert (path.read_bytes(), (root / "modelzoo.lock").read_bytes()) == before


def test_add_creates_the_project_file_and_survives_sub_tables(tmp_path, monkeypatch):
    reg = TestRegistry(tmp_path / "registry")
    reg.publish("tiny", "1.0.0", variants={"full": 100})
    reg.publish("beta", "1.0.0", variants={"full": 100})
    monkeypatch.setenv("MODELZOO_REGISTRY", str(reg.root))
    where = tmp_path / "newproj"
    mp.add("tiny", project=where)
    text = (where / "modelzoo.toml").read_text()
    assert text.startswith("# The pretrained models") and '"tiny" = "^1.0.0"' in text
    lock = lock_doc(where)["models"]["tiny"]
    # a registry outside the project is written as an absolute location
    assert lock["registry"]["location"] == str(reg.root)
    assert lock["artifacts"]["full"]["url"].startswith("file://")

    # [models."name"] sub-tables and dotted keys: edited in place, comments and layout kept
    (where / "modelzoo.toml").write_text('[models."tiny"]\nversion = "^1"\n')
    mp.add("beta", project=where)
    assert [r.name for r in mp.load_project(where).models] == ["beta", "tiny"]
    hand_written = (
        "# our models (keep this)\n"
        'models.tiny = { version = "^1" }  # the small one\n'
        "[registries]  # pinned for the demo\n"
        "\n"
        "# more models below\n"
    )
    (where / "modelzoo.toml").write_text(hand_written)
    mp.add("beta", project=where)
    project = mp.load_project(where)
    assert [r.name for r in project.models] == ["beta", "tiny"]
    text = (where / "modelzoo.toml").read_text()
    for comment in ("# our models (keep this)", "# the small one", "# pinned for the demo"):
        assert comment in text
    mp.remove_from_project("beta", project=where)
    assert (where / "modelzoo.toml").read_text() == hand_written
    assert [r.name for r in mp.load_project(where).models] == ["tiny"]


# --------------------------------------------------------------------------- resolution


def test_resolution_in_a_project_honours_the_lock(proj, monkeypatch):
    root, reg = proj
    reg.publish("tiny", "1.0.0", variants={"full": 100})
    write_toml(root, '"tiny" = "^1"\n')
    mp.install_project()
    reg.publish("tiny", "1.1.0", variants={"full": 100})
    assert mp.resolve_in_context("tiny").version == "1.0.0"
    assert mp.resolve_in_context("tiny@1.1.0").version == "1.1.0"
    assert mp.resolve_in_context("tiny", version="^1").version == "1.1.0"
    with pytest.raises(UsageError, match="give the version once"):
        mp.resolve_in_context("tiny@1.0.0", version="1.1.0")
    # outside the project the registries decide (the project registry is not configured)
    monkeypatch.setenv("MODELZOO_REGISTRY", str(reg.root))
    monkeypatch.chdir(root.parent / "elsewhere")
    assert mp.resolve_in_context("tiny").version == "1.1.0"


def test_installed_models_resolve_when_no_registry_has_them(proj, monkeypatch):
    root, reg = proj
    reg.publish("tiny", "1.0.0", variants={"full": 100})
    write_toml(root, '"tiny" = "^1"\n')
    mp.install_project()
    os.rename(root / "registry", root / "gone")
    (root / "modelzoo.toml").write_text('[models]\n"tiny" = "^1"\n')  # no project registry
    resolved = mp.resolve_in_context("tiny")
    assert (resolved.version, resolved.registry) == ("1.0.0", "local")
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    assert mp.resolve_in_context("tiny@^1").version == "1.0.0"
    with pytest.raises(ModelNotFoundError):
        mp.resolve_in_context("tiny@2.0.0")


def test_project_registry_over_http(tmp_path, monkeypatch):
    served = TestRegistry(tmp_path / "served")
    art = served.publish("remote-model", "3.1.4", variants={"full": 4000})["full"]
    root = tmp_path / "app"
    root.mkdir()
    monkeypatch.chdir(root)
    with LocalServer(served.root) as server:
        write_toml(root, '"remote-model" = "^3"\n', registries=f'team = "{server.url}/"\n')
        mp.install_project()
    entry = lock_doc(root)["models"]["remote-model"]
    assert entry["registry"] == {"name": "team", "location": server.url}
    assert entry["artifacts"]["full"]["url"] == f"{server.url}{art.served_path}"
    assert entry["artifacts"]["full"]["sha256"] == art.sha256


def test_outdated_outside_a_project_uses_installed_models(tmp_path, monkeypatch):
    reg = TestRegistry(tmp_path / "registry")
    reg.publish("tiny", "1.0.0", variants={"full": 100})
    monkeypatch.setenv("MODELZOO_REGISTRY", str(reg.root))
    import modelzoo

    modelzoo.install("tiny")
    reg.publish("tiny", "1.2.0", variants={"full": 100})
    rows = mp.outdated()
    assert [(r.name, r.current, r.wanted, r.latest) for r in rows] == [
        ("tiny", "1.0.0", "1.2.0", "1.2.0")
    ]


# --------------------------------------------------------------------------- CLI


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_cli_add_install_frozen_outdated_remove(proj, tmp_path, monkeypatch):
    root, reg = proj
    reg.publish("tiny", "1.0.0", variants={"full": 100})
    reg.publish("other", "2.0.0", variants={"full": 100})
    write_toml(root, "")

    added = json.loads(run("add", "tiny@^1", "--json").stdout)
    assert added["lock_changed"] and added["installed"] == ["tiny@1.0.0 (full)"]
    assert added["models"] == [
        {"name": "tiny", "version": "1.0.0", "constraint": "^1", "variants": ["full"],
         "registry": "local"}
    ]  # fmt: skip
    human = run("add", "other").stdout
    assert "installed other@2.0.0 (full)" in human and "wrote" in human

    reg.publish("tiny", "1.5.0", variants={"full": 100})
    rows = json.loads(run("outdated", "--json").stdout)
    assert rows == [
        {"name": "other", "current": "2.0.0", "wanted": "2.0.0", "latest": "2.0.0",
         "constraint": "^2.0.0", "registry": "local", "outdated": False},
        {"name": "tiny", "current": "1.0.0", "wanted": "1.5.0", "latest": "1.5.0",
         "constraint": "^1", "registry": "local", "outdated": True},
    ]  # fmt: skip
    table = run("outdated").stdout
    assert "tiny" in table and "1.5.0" in table

    fresh_cache(tmp_path, monkeypatch, "ci")
    frozen = json.loads(run("install", "--frozen", "--json").stdout)
    assert frozen["frozen"] and sorted(frozen["installed"]) == [
        "other@2.0.0 (full)", "tiny@1.0.0 (full)"
    ]  # fmt: skip
    assert "match" in run("install", "--frozen").stdout
    assert "is up to date" in run("install").stdout

    gone = json.loads(run("remove", "other", "--json").stdout)
    assert [r["name"] for r in gone] == ["other"]
    assert "other" not in (root / "modelzoo.toml").read_text()
    assert list(lock_doc(root)["models"]) == ["tiny"]
    kept = run("remove", "tiny", "--keep-cache").stdout
    assert "removed tiny from modelzoo.toml" in kept
    assert Cache().record("tiny", "1.0.0", "full") is not None


def test_cli_errors_are_one_line_and_exit_1(proj, tmp_path):
    root, reg = proj
    reg.publish("tiny", "1.0.0", variants={"full": 100})
    write_toml(root, '"tiny" = "^1"\n')
    result = run("install", "--frozen", ok=False)
    assert result.exit_code == 1 and "error:" in result.output and "does not exist" in result.output
    result = run("install", "tiny", "--frozen", ok=False)
    assert result.exit_code == 1 and "takes no tiny" in result.output
    result = run("install", "--project", str(tmp_path / "nowhere"), ok=False)
    assert result.exit_code == 1 and "does not exist" in result.output
    result = run("add", "nope", ok=False)
    assert result.exit_code == 1 and "Unknown model 'nope'" in result.output
    result = run("remove", "nope", ok=False)
    assert result.exit_code == 1 and "not installed" in result.output
