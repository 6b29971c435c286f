"""Registries: folders and HTTP sites, priority, resolution, search, caching, config."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import modelzoo
from modelzoo.errors import (
    ManifestError,
    ModelNotFoundError,
    OfflineError,
    RegistryError,
    UsageError,
    VariantNotFoundError,
    VersionNotFoundError,
)
from modelzoo.hub import registry as reg
from modelzoo.hub.registry import (
    add_registry,
    build_index,
    list_registries,
    remove_registry,
    resolve,
    search,
    write_index,
)
from modelzoo.hub.remote import TTL_SECONDS

# --- helpers ----------------------------------------------------------------------------


def manifest_doc(name: str, version: str = "1.0.0", **extra) -> dict:
    doc = {
        "schema_version": 1,
        "name": name,
        "version": version,
        "family": extra.pop("family", "Toy"),
        "summary": extra.pop("summary", f"toy model {name}"),
        "task": extra.pop("task", "image-classification"),
        "license": "MIT",
        "tags": extra.pop("tags", ["toy"]),
        "input": {"shape": [8, 8, 3], "preprocessing": "none"},
        "labels": None,
        "build": {"kind": "keras-model"},
        "artifacts": {
            "full": {
                "url": "full.keras",
                "mirrors": ["https://mirror.example.org/full.keras"],
                "hash": None,
                "format": "keras",
            },
            "notop": {"url": "https://example.org/notop.keras", "hash": None, "format": "keras"},
        },
    }
    doc.update(extra)
    return doc


def make_registry(root: Path, models: list, *, index: bool = True) -> Path:
    """``models``: (name, version) pairs or full manifest documents."""
    root.mkdir(parents=True, exist_ok=True)
    for item in models:
        doc = item if isinstance(item, dict) else manifest_doc(*item)
        folder = root / "models" / doc["name"] / doc["version"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
        (folder / "full.keras").write_bytes(b"not really a model")
    if index:
        write_index(root)
    return root


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        status = self.server.fail.get(self.path)
        if status:
            self.send_error(status)
            return
        super().do_GET()


class Server:
    """A static file server for ``root`` on 127.0.0.1 (port 0), in a thread."""

    def __init__(self, root: Path):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
        self.httpd.requests = []
        self.httpd.fail = {}
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    """A registry folder with two models served over HTTP; MODELZOO_REGISTRY points at it."""
    root = make_registry(tmp_path / "site", [("remote-net", "1.0.0"), ("remote-net", "1.1.0")])
    server = Server(root)
    yield server, root
    server.stop()


@pytest.fixture(autouse=True)
def _fast_failures(monkeypatch):
    monkeypatch.setenv("MODELZOO_MAX_RETRIES", "0")
    monkeypatch.setenv("MODELZOO_TIMEOUT", "5")


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/registry"


def age(path: Path, seconds: float) -> None:
    """Pretend ``path`` was written ``seconds`` ago (the TTL is based on mtime)."""
    past = time.time() - seconds
    os.utime(path, (past, past))


# --- index files ------------------------------------------------------------------------


def test_write_index_is_sorted_deterministic_and_one_entry_per_line(tmp_path):
    root = make_registry(
        tmp_path / "r",
        [("beta", "1.10.0"), ("beta", "1.9.0"), ("alpha", "2.0.0"), ("beta", "1.0.0-rc.1")],
    )
    first = (root / "index.json").read_bytes()
    assert write_index(root) == root / "index.json"
    assert (root / "index.json").read_bytes() == first
    data = json.loads(first)
    assert data["schema_version"] == 1
    order = [(m["name"], m["version"]) for m in data["models"]]
    assert order == [
        ("alpha", "2.0.0"),
        ("beta", "1.0.0-rc.1"),
        ("beta", "1.9.0"),
        ("beta", "1.10.0"),  # semantic order, not string order
    ]
    lines = first.decode().splitlines()
    assert sum('"name": ' in line for line in lines) == 4 and len(lines) == 3 + 4 + 2
    entry = data["models"][0]
    assert list(entry) == ["name", "version", "family", "summary", "task", "tags", "manifest"]
    assert entry["manifest"] == "models/alpha/2.0.0/manifest.json"
    assert build_index(root) == data


def test_empty_registry_and_stray_files(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    assert build_index(root) == {"schema_version": 1, "models": []}
    (root / "models").mkdir()
    (root / "models" / ".DS_Store").write_text("x")
    (root / "models" / "README").write_text("x")
    write_index(root)
    assert json.loads((root / "index.json").read_text()) == {"schema_version": 1, "models": []}


def test_build_index_errors_name_the_file(tmp_path):
    with pytest.raises(RegistryError, match="does not exist"):
        build_index(tmp_path / "nope")

    root = make_registry(tmp_path / "r", [("good", "1.0.0")], index=False)
    bad = manifest_doc("bad")
    bad["artifacts"]["full"]["hash"] = "md5:123"
    make_registry(root, [bad], index=False)
    with pytest.raises(ManifestError) as info:
        write_index(root)
    assert info.value.source == str(root / "models/bad/1.0.0/manifest.json")
    assert info.value.field == "artifacts.full.hash"
    assert not (root / "index.json").exists()  # nothing written on failure


def test_build_index_rejects_misplaced_manifests_and_empty_version_folders(tmp_path):
    root = make_registry(tmp_path / "r", [], index=False)
    folder = root / "models" / "wrong" / "1.0.0"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(manifest_doc("right")))
    with pytest.raises(ManifestError, match="move it to models/right/1.0.0/manifest.json") as info:
        build_index(root)
    assert info.value.field == "name"

    (folder / "manifest.json").write_text(json.dumps(manifest_doc("wrong", "2.0.0")))
    with pytest.raises(ManifestError) as info:
        build_index(root)
    assert info.value.field == "version"

    (folder / "manifest.json").unlink()
    with pytest.raises(RegistryError, match=r"1\.0\.0 has no manifest\.json"):
        build_index(root)


# --- folder registries and resolution ---------------------------------------------------


def test_folder_registry_resolves_with_file_urls(tmp_path, monkeypatch):
    root = make_registry(tmp_path / "my reg", [("toy-net", "1.0.0")])
    monkeypatch.setenv("MODELZOO_REGISTRY", str(root))
    r = resolve("toy-net")
    assert r.manifest.name == "toy-net" and r.version == "1.0.0" and r.name == "toy-net"
    assert r.registry == "my-reg" and r.location == str(root)
    assert r.base_url == (root / "models/toy-net/1.0.0").as_uri() + "/"
    full, mirror = r.artifact_urls("full")
    assert full == (root / "models/toy-net/1.0.0/full.keras").as_uri()
    assert full.startswith("file:///") and "%20" in full  # the space is URL-encoded
    assert mirror == "https://mirror.example.org/full.keras"
    assert r.artifact_urls("notop") == ["https://example.org/notop.keras"]
    with pytest.raises(VariantNotFoundError):
        r.artifact_urls("int8")
    assert r.manifest.source == str(root / "models/toy-net/1.0.0/manifest.json")
    assert modelzoo.info("toy-net") == r.manifest
    assert modelzoo.resolve is resolve and modelzoo.search is search


def test_file_url_location(tmp_path, monkeypatch):
    root = make_registry(tmp_path / "r", [("toy-net", "1.0.0")])
    monkeypatch.setenv("MODELZOO_REGISTRY", root.as_uri())
    registries = list_registries()
    assert registries[0].kind == "folder" and registries[0].location == str(root)
    assert resolve("toy-net").registry == "r"


def test_versions_and_constraints(tmp_path, monkeypatch):
    root = make_registry(
        tmp_path / "r",
        [
            ("multi", "1.0.0"),
            ("multi", "1.2.0"),
            ("multi", "1.10.0"),
            ("multi", "2.0.0-rc.1"),
            ("pre-only", "0.1.0-beta.1"),
            ("pre-only", "0.1.0-beta.2"),
        ],
    )
    monkeypatch.setenv("MODELZOO_REGISTRY", str(root))
    assert resolve("multi").version == "1.10.0"
    assert resolve("multi@latest").version == "1.10.0"
    assert resolve("multi@1.2").version == "1.2.0"
    assert resolve("multi@1.2.0").version == "1.2.0"
    assert resolve("multi@^1").version == "1.10.0"
    assert resolve("multi@<1.5").version == "1.2.0"
    assert resolve("multi@>=1.0.0,<1.10.0").version == "1.2.0"
    assert resolve("multi@2.0.0-rc.1").version == "2.0.0-rc.1"
    assert resolve("multi", version="1.0.0").version == "1.0.0"
    assert resolve("multi@1.0.0", version="1.0.0").version == "1.0.0"
    assert resolve("MULTI@1.0.0").version == "1.0.0"  # names are lowercase
    assert resolve("multi").versions == ("1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1")
    # no release at all: the highest prerelease
    assert resolve("pre-only").version == "0.1.0-beta.2"

    with pytest.raises(VersionNotFoundError) as info:
        resolve("multi@3")
    assert info.value.available == ["1.0.0", "1.2.0", "1.10.0", "2.0.0-rc.1"]
    assert "Available: 1.0.0, 1.2.0, 1.10.0, 2.0.0-rc.1" in str(info.value)
    assert isinstance(info.value, LookupError)

    with pytest.raises(UsageError, match="give the version once"):
        resolve("multi@1.0.0", version="1.2.0")
    with pytest.raises(UsageError, match="Invalid version"):
        resolve("multi@>>1")


@pytest.mark.parametrize("spec", ["../x", "a/b", "", "@1.0.0", "-x"])
def test_invalid_names_are_usage_errors(spec):
    with pytest.raises(UsageError):
        resolve(spec)


def test_unknown_name_suggests_nearest_across_registries(tmp_path, monkeypatch):
    root = make_registry(tmp_path / "r", [("toy-net", "1.0.0")])
    monkeypatch.setenv("MODELZOO_REGISTRY", str(root))
    with pytest.raises(ModelNotFoundError) as info:
        resolve("toynet")
    assert "toy-net" in info.value.suggestions
    with pytest.raises(ModelNotFoundError) as info:
        resolve("resnet5")  # only the bundled registry has resnet50
    assert "resnet50" in info.value.suggestions
    assert "Did you mean" in str(info.value) and "modelzoo search" in str(info.value)
    assert isinstance(info.value, LookupError)
    with pytest.raises(ModelNotFoundError) as info:
        resolve("zzzzzzzz-qqq")
    assert info.value.suggestions == []


def test_priority_env_then_config_newest_first_then_bundled(tmp_path, monkeypatch):
    env_a = make_registry(tmp_path / "env-a", [("shared", "1.0.0"), ("only-a", "1.0.0")])
    env_b = make_registry(tmp_path / "env-b", [("shared", "9.0.0"), ("only-b", "1.0.0")])
    old = make_registry(tmp_path / "old", [("cfg", "1.0.0"), ("resnet50", "7.0.0")])
    new = make_registry(tmp_path / "new", [("cfg", "2.0.0")])
    add_registry(old)
    add_registry(new)
    monkeypatch.setenv("MODELZOO_REGISTRY", f"{env_a},{env_b}")
    names = [(r.name, r.origin) for r in list_registries()]
    assert names == [
        ("env-a", "env"),
        ("env-b", "env"),
        ("new", "config"),
        ("old", "config"),
        ("bundled", "bundled"),
    ]
    # the first registry that has a name owns it, even with a lower version
    assert resolve("shared").registry == "env-a" and resolve("shared").version == "1.0.0"
    with pytest.raises(VersionNotFoundError):
        resolve("shared@9")  # shadowed: env-b's 9.0.0 is not considered
    assert resolve("cfg").registry == "new"
    assert resolve("resnet50").registry == "old"  # shadows the bundled resnet50
    assert resolve("only-b").registry == "env-b"
    assert resolve("vgg16").registry == "bundled"

    hits = {e.name: e for e in search()}
    assert hits["shared"].registry == "env-a" and hits["shared"].version == "1.0.0"
    assert hits["resnet50"].registry == "old"
    assert [e.name for e in search("shared")] == ["shared"]  # shadowed copy dropped


def test_missing_or_invalid_local_index_is_an_error(tmp_path, monkeypatch):
    root = make_registry(tmp_path / "r", [("toy-net", "1.0.0")], index=False)
    monkeypatch.setenv("MODELZOO_REGISTRY", str(root))
    with pytest.raises(RegistryError) as info:
        search()
    assert str(root / "index.json") in str(info.value)
    assert f"modelzoo registry index {root}" in str(info.value)

    for content, fragment in [
        (b"{not json", "not valid JSON"),
        (b'{"schema_version": 2, "models": []}', "upgrade modelzoo"),
        (b'{"schema_version": 1}', "expected an object"),
        (b'{"schema_version": 1, "models": [{"name": "../x", "version": "1.0.0"}]}', "name"),
        (
            b'{"schema_version": 1, "models": [{"name": "x", "version": "1.0.0",'
            b' "manifest": "../../etc/passwd"}]}',
            "relative path inside the registry",
        ),
    ]:
        (root / "index.json").write_bytes(content)
        with pytest.raises(RegistryError) as info:
            resolve("toy-net")
        assert str(root / "index.json") in str(info.value) and fragment in str(info.value)
        assert "modelzoo registry index" in str(info.value)

    monkeypatch.setenv("MODELZOO_REGISTRY", str(tmp_path / "gone"))
    with pytest.raises(RegistryError, match="does not exist"):
        search()


def test_stale_local_index_is_detected(tmp_path, monkeypatch):
    root = make_registry(tmp_path / "r", [("toy-net", "1.0.0")])
    monkeypatch.setenv("MODELZOO_REGISTRY", str(root))
    manifest = root / "models/toy-net/1.0.0/manifest.json"
    doc = json.loads(manifest.read_text())
    doc["version"] = "1.0.1"
    manifest.write_text(json.dumps(doc))
    with pytest.raises(RegistryError, match="index is stale"):
        resolve("toy-net")
    manifest.unlink()
    with pytest.raises(RegistryError, match="is missing"):
        resolve("toy-net")


def test_index_edits_are_seen_without_restarting(tmp_path, monkeypatch):
    root = make_registry(tmp_path / "r", [("first", "1.0.0")])
    monkeypatch.setenv("MODELZOO_REGISTRY", str(root))
    assert [e.name for e in search("first")] == ["first"]
    make_registry(root, [("second", "1.0.0")])
    assert resolve("second").registry == "r"


# --- HTTP registries --------------------------------------------------------------------


def test_http_registry_resolves_and_caches(served, monkeypatch):
    server, root = served
    monkeypatch.setenv("MODELZOO_REGISTRY", server.url + "/")
    [registry] = [r for r in list_registries() if r.kind == "http"]
    assert registry.location == server.url  # trailing slash dropped
    assert registry.name == server.url.split("://")[1].replace(":", "-")

    r = resolve("remote-net")
    assert r.version == "1.1.0" and r.registry == registry.name
    assert r.base_url == f"{server.url}/models/remote-net/1.1.0/"
    assert r.artifact_urls("full")[0] == f"{server.url}/models/remote-net/1.1.0/full.keras"
    assert r.manifest.source == f"{server.url}/models/remote-net/1.1.0/manifest.json"
    assert server.requests == ["/index.json", "/models/remote-net/1.1.0/manifest.json"]

    cache = registry.cache_dir
    assert cache.parent == modelzoo.config.home() / "registries"
    assert (cache / "index.json").read_bytes() == (root / "index.json").read_bytes()
    assert (cache / "models/remote-net/1.1.0/manifest.json").is_file()

    # within the TTL nothing is fetched again
    resolve("remote-net")
    assert [e.name for e in search("remote")] == ["remote-net"]
    assert len(server.requests) == 2

    # refresh=True forces a fetch; an expired copy is fetched again
    search("remote", refresh=True)
    assert server.requests[-1] == "/index.json" and len(server.requests) == 3
    age(cache / "index.json", TTL_SECONDS + 5)
    search("remote")
    assert len(server.requests) == 4


def test_offline_uses_the_cache_or_raises(served, monkeypatch, caplog):
    server, _ = served
    monkeypatch.setenv("MODELZOO_REGISTRY", server.url)
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    # nothing cached yet: the remote-only model cannot be found
    with pytest.raises(OfflineError) as info:
        resolve("remote-net")
    assert f"{server.url}/index.json" in str(info.value) and "MODELZOO_OFFLINE" in str(info.value)
    assert isinstance(info.value, ConnectionError)
    # ... but bundled models still resolve, with a warning about the skipped registry
    with caplog.at_level(logging.WARNING, logger="modelzoo"):
        assert resolve("vgg16").registry == "bundled"
    assert "Skipping registry" in caplog.text
    assert server.requests == []

    monkeypatch.delenv("MODELZOO_OFFLINE")
    resolve("remote-net")
    fetched = len(server.requests)
    server.stop()
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    cache = list_registries()[0].cache_dir
    age(cache / "index.json", 10 * 24 * 3600)  # offline, age does not matter
    assert resolve("remote-net").version == "1.1.0"
    assert [e.name for e in search("remote")] == ["remote-net"]
    with pytest.raises(OfflineError):
        resolve("remote-net@1.0.0")  # that manifest was never fetched
    assert len(server.requests) == fetched


def test_unreachable_registry(monkeypatch, caplog):
    url = closed_port_url()
    monkeypatch.setenv("MODELZOO_REGISTRY", url)
    with pytest.raises(RegistryError) as info:
        resolve("remote-net")
    message = str(info.value)
    assert f"{url}/index.json" in message and "MODELZOO_OFFLINE" in message
    assert isinstance(info.value, OSError)
    with caplog.at_level(logging.WARNING, logger="modelzoo"):
        assert resolve("vgg16").registry == "bundled"
        assert any(e.name == "vgg16" for e in search("vgg"))
    assert url in caplog.text


def test_stale_cache_is_used_when_a_refresh_fails(served, monkeypatch, caplog):
    server, _ = served
    monkeypatch.setenv("MODELZOO_REGISTRY", server.url)
    resolve("remote-net")
    cache = list_registries()[0].cache_dir
    age(cache / "index.json", TTL_SECONDS * 3)
    server.stop()
    with caplog.at_level(logging.WARNING, logger="modelzoo"):
        assert [e.name for e in search("remote")] == ["remote-net"]
    assert "Could not refresh" in caplog.text and "using the copy cached" in caplog.text


def test_http_errors_name_the_url_and_are_not_cached(served, monkeypatch):
    server, root = served
    monkeypatch.setenv("MODELZOO_REGISTRY", server.url)
    server.httpd.fail["/index.json"] = 404
    with pytest.raises(RegistryError, match="HTTP 404") as info:
        resolve("remote-net")
    assert f"{server.url}/index.json" in str(info.value)

    server.httpd.fail.clear()
    (root / "index.json").write_text("{broken")
    with pytest.raises(RegistryError, match="not valid JSON") as info:
        resolve("remote-net")
    assert f"{server.url}/index.json" in str(info.value)
    assert not (list_registries()[0].cache_dir / "index.json").exists()

    write_index(root)
    server.httpd.fail["/models/remote-net/1.1.0/manifest.json"] = 500
    with pytest.raises(RegistryError, match="HTTP 500"):
        resolve("remote-net")
    assert resolve("remote-net@1.0.0").version == "1.0.0"


def test_remote_manifest_must_match_its_index_entry(served, monkeypatch):
    server, root = served
    monkeypatch.setenv("MODELZOO_REGISTRY", server.url)
    path = root / "models/remote-net/1.1.0/manifest.json"
    path.write_text(json.dumps(manifest_doc("other-net", "1.1.0")))
    with pytest.raises(RegistryError, match="index is stale"):
        resolve("remote-net")
    path.write_text("{nope")
    with pytest.raises(ManifestError, match="not valid JSON") as info:
        resolve("remote-net")
    assert info.value.source == f"{server.url}/models/remote-net/1.1.0/manifest.json"


def test_refresh_registries(served, monkeypatch):
    server, _ = served
    monkeypatch.setenv("MODELZOO_REGISTRY", f"{server.url},{closed_port_url()}")
    with pytest.raises(RegistryError, match="could not be refreshed") as info:
        reg.refresh_registries()
    assert "127.0.0.1" in str(info.value)
    assert server.requests == ["/index.json"]  # the good one was refreshed anyway
    monkeypatch.setenv("MODELZOO_REGISTRY", server.url)
    assert [r.location for r in reg.refresh_registries()] == [server.url]
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    with pytest.raises(OfflineError):
        reg.refresh_registries()


def test_cache_folder_name_cannot_escape(monkeypatch):
    monkeypatch.setenv("MODELZOO_REGISTRY", "http://h/../../../etc/x/,https://h/a%2F..%2Fb")
    home = modelzoo.config.home()
    for registry in list_registries()[:2]:
        folder = registry.cache_dir
        assert folder.parent == home / "registries"
        assert "/" not in folder.name and ".." not in folder.name


# --- configuration ----------------------------------------------------------------------


def test_add_list_remove_round_trip(tmp_path, _isolated_home):
    a = make_registry(tmp_path / "alpha", [("a-net", "1.0.0")])
    b = make_registry(tmp_path / "beta", [("b-net", "1.0.0")])
    added = add_registry(a)
    assert (added.name, added.location, added.kind, added.origin) == (
        "alpha",
        str(a),
        "folder",
        "config",
    )
    add_registry(b, name="team")
    config = json.loads((_isolated_home / "config.json").read_text())
    assert config == {
        "registries": [
            {"name": "team", "location": str(b)},
            {"name": "alpha", "location": str(a)},
        ]
    }
    assert [r.name for r in list_registries()] == ["team", "alpha", "bundled"]
    assert resolve("a-net").registry == "alpha"

    # adding a location again moves it to the top and keeps its name
    add_registry(a.as_uri())
    assert [r.name for r in list_registries()] == ["alpha", "team", "bundled"]

    assert remove_registry("team").location == str(b)
    assert remove_registry(str(a)).name == "alpha"  # by location
    assert [r.name for r in list_registries()] == ["bundled"]
    assert json.loads((_isolated_home / "config.json").read_text()) == {"registries": []}


def test_config_keeps_other_keys_and_reports_corruption(tmp_path, _isolated_home):
    _isolated_home.mkdir(parents=True)
    config = _isolated_home / "config.json"
    config.write_text(json.dumps({"telemetry": False}))
    add_registry(make_registry(tmp_path / "r", []))
    assert json.loads(config.read_text())["telemetry"] is False
    config.write_text("{oops")
    with pytest.raises(RegistryError, match="config.json is not valid JSON"):
        list_registries()
    config.write_text(json.dumps({"registries": [{"name": 1}]}))
    with pytest.raises(RegistryError, match="Fix it or delete it"):
        list_registries()


def test_add_registry_errors(tmp_path, monkeypatch):
    folder = make_registry(tmp_path / "r", [])
    with pytest.raises(UsageError, match="does not exist"):
        add_registry(tmp_path / "missing")
    with pytest.raises(UsageError, match="scheme 'ftp'"):
        add_registry("ftp://example.org/registry")
    with pytest.raises(UsageError, match="no host"):
        add_registry("https:///registry")
    with pytest.raises(UsageError, match="reserved"):
        add_registry(folder, name="bundled")
    with pytest.raises(UsageError, match="Invalid registry name"):
        add_registry(folder, name="../evil")
    add_registry(folder, name="mine")
    other = make_registry(tmp_path / "other", [])
    with pytest.raises(UsageError, match="already exists"):
        add_registry(other, name="mine")
    # derived names never collide
    again = make_registry(tmp_path / "x" / "mine", [])
    assert add_registry(again).name == "mine-2"

    with pytest.raises(UsageError, match="Added registries: mine-2, mine"):
        remove_registry("nope")
    with pytest.raises(UsageError, match="cannot be removed"):
        remove_registry("bundled")
    monkeypatch.setenv("MODELZOO_REGISTRY", str(tmp_path / "env-reg"))
    with pytest.raises(UsageError, match="MODELZOO_REGISTRY"):
        remove_registry("env-reg")
    monkeypatch.setenv("MODELZOO_REGISTRY", "ftp://example.org/x")
    with pytest.raises(UsageError, match="MODELZOO_REGISTRY entry"):
        list_registries()


def test_env_location_outranks_the_same_configured_one(tmp_path, monkeypatch):
    root = make_registry(tmp_path / "r", [("toy-net", "1.0.0")])
    add_registry(root, name="mine")
    monkeypatch.setenv("MODELZOO_REGISTRY", f"{root},{root.as_uri()}")
    assert [(r.name, r.origin) for r in list_registries()] == [
        ("mine", "env"),
        ("bundled", "bundled"),
    ]


def test_removing_a_remote_registry_deletes_its_cache(served):
    server, _ = served
    registry = add_registry(server.url)
    resolve("remote-net")
    assert registry.cache_dir.is_dir()
    remove_registry(registry.name)
    assert not registry.cache_dir.exists()


# --- search -----------------------------------------------------------------------------


@pytest.fixture
def catalogue(tmp_path, monkeypatch):
    docs = [
        manifest_doc("net", family="Net", tags=["toy", "mobile"]),
        manifest_doc("net_large", family="Net", tags=["toy"]),
        manifest_doc("supernet", family="Super", summary="a big one"),
        manifest_doc("alpha", family="Greek", summary="has a net in the summary"),
        manifest_doc("beta", family="Net", tags=["vision"], task="segmentation"),
        manifest_doc("gamma", family="Greek", tags=["net"]),
        manifest_doc("net_large", "2.0.0", family="Net", tags=["toy"], summary="newer"),
    ]
    root = make_registry(tmp_path / "cat", docs)
    monkeypatch.setenv("MODELZOO_REGISTRY", str(root))
    return root


def _names(entries, registry="cat"):
    return [e.name for e in entries if e.registry == registry]


def test_search_ranking(catalogue):
    hits = search("net")
    # exact, prefix, substring, family/tag match, summary match; ties by name
    assert _names(hits) == ["net", "net_large", "supernet", "beta", "gamma", "alpha"]
    assert hits[0].registry == "cat"
    assert _names(search("NET")) == _names(hits)  # case-insensitive
    large = next(e for e in hits if e.name == "net_large")
    assert large.version == "2.0.0" and large.summary == "newer"  # latest version only


def test_search_globs_terms_and_filters(catalogue):
    assert _names(search("net*")) == ["net", "net_large"]
    assert _names(search("*net")) == ["net", "supernet"]
    assert _names(search("?et")) == ["net"]
    assert _names(search("net big")) == ["supernet"]  # every term must match
    assert _names(search("vision")) == ["beta"]
    assert _names(search(tag="mobile")) == ["net"]
    assert _names(search(tag="MOBILE")) == ["net"]
    assert _names(search(family="net")) == ["beta", "net", "net_large"]
    assert _names(search("net", family="Greek")) == ["gamma", "alpha"]
    assert _names(search(task="segmentation")) == ["beta"]
    assert _names(search("nothing-like-this")) == []
    everything = search()
    assert {"net", "alpha", "vgg16", "resnet50"} <= {e.name for e in everything}
    assert len({e.name for e in everything}) == len(everything)
    assert everything == sorted(everything, key=lambda e: e.name)


def test_search_entries_serialise(catalogue):
    entry = search("net")[0]
    assert entry.to_dict() == {
        "name": "net",
        "version": "1.0.0",
        "family": "Net",
        "summary": "toy model net",
        "task": "image-classification",
        "tags": ["toy", "mobile"],
        "manifest": "models/net/1.0.0/manifest.json",
        "registry": "cat",
    }
    assert entry.spec == "net@1.0.0"


def test_registry_module_imports_neither_tensorflow_nor_requests():
    code = (
        "import sys, modelzoo.hub.registry as r\n"
        "r.search('mobilenet'); r.resolve('vgg16')\n"
        "bad = [m for m in ('tensorflow', 'tf_keras', 'requests') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""
