"""Issue 10: the weights you load are the bytes the manifest names, and nothing hangs or leaks.

Real tiny MobileNets (alpha 0.25, 32x32) with distinct random weights, published without
hashes in a local registry whose artifact URLs point at a real local HTTP server.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _server import LocalServer

import modelzoo
from modelzoo.hub import registry
from modelzoo.hub.cache import Cache

KWARGS = {"alpha": 0.25, "input_shape": [32, 32, 3], "classes": 3}


def _app_manifest(name: str, version: str, artifacts: dict) -> dict:
    return {
        "schema_version": 1,
        "name": name,
        "version": version,
        "family": "MobileNet",
        "summary": "tiny MobileNet for integrity tests",
        "input": {"shape": [32, 32, 3], "min_size": 32, "preprocessing": "tf"},
        "build": {"kind": "keras-application", "constructor": "MobileNet", "kwargs": KWARGS},
        "artifacts": artifacts,
        "cut_points": [{"layer": "conv_pw_13_relu", "shape": [1, 1, 256], "variant": "notop"}],
    }


def _save_weights(models: dict, path: Path, *, seed: int, include_top: bool) -> list[np.ndarray]:
    """Random MobileNet weights for ``seed``, saved the way official Keras weights are."""
    import tf_keras as keras

    key = "full" if include_top else "notop"
    if key not in models:  # build each architecture once; only the weights differ
        kwargs = dict(KWARGS, input_shape=tuple(KWARGS["input_shape"]))
        models[key] = keras.applications.MobileNet(include_top=include_top, weights=None, **kwargs)
    model = models[key]
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in model.get_weights()])
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(path)
    return model.get_weights()


@pytest.fixture(scope="module")
def hashless(tmp_path_factory):
    """A registry of unhashed artifacts: three models/versions/variants, distinct weights.

    ``alpha@1.0.0`` has ``full`` and ``notop``; ``alpha@1.1.0`` and ``beta@1.0.0`` have
    ``notop`` only. Every file has the same suffix and no published hash.
    """
    root = tmp_path_factory.mktemp("hashless")
    layout = {
        ("alpha", "1.0.0"): {"full": 1, "notop": 2},
        ("alpha", "1.1.0"): {"notop": 3},
        ("beta", "1.0.0"): {"notop": 4},
    }
    weights, models = {}, {}
    for (name, version), variants in layout.items():
        folder = root / "models" / name / version
        artifacts = {}
        for variant, seed in variants.items():
            weights[name, version, variant] = _save_weights(
                models, folder / f"{variant}.h5", seed=seed, include_top=variant == "full"
            )
            # filled with the server's URL by the `apps` fixture
            artifacts[variant] = {"url": f"{variant}.h5", "format": "h5-weights", "hash": None}
        doc = _app_manifest(name, version, artifacts)
        (folder / "manifest.json").write_text(json.dumps(doc), encoding="utf-8")
    return root, weights


@pytest.fixture
def apps(hashless, tmp_path, monkeypatch):
    """Serve the hashless registry; its manifests name absolute http:// artifact URLs."""
    source, weights = hashless
    with LocalServer(source) as server:
        reg = tmp_path / "reg"
        for manifest in source.glob("models/*/*/manifest.json"):
            doc = json.loads(manifest.read_text(encoding="utf-8"))
            rel = manifest.parent.relative_to(source).as_posix()
            for art in doc["artifacts"].values():
                art["url"] = f"{server.url}/{rel}/{Path(art['url']).name}"
            target = reg / rel / "manifest.json"
            target.parent.mkdir(parents=True)
            target.write_text(json.dumps(doc), encoding="utf-8")
        registry.write_index(reg)
        monkeypatch.setenv("MODELZOO_REGISTRY", str(reg))
        yield server, weights


def _gets(server, suffix=".h5") -> list[str]:
    return [p for p in server.paths("GET") if p.endswith(suffix)]


def _assert_weights(model, expected: list[np.ndarray]) -> None:
    got = model.get_weights()
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- defect 1


def test_two_unhashed_artifacts_of_different_models_are_never_shared(apps):
    server, weights = apps
    a = modelzoo.install("alpha@1.0.0", variant="notop")
    b = modelzoo.install("beta", variant="notop")
    assert a.fetched == ("notop",) and b.fetched == ("notop",)
    assert _gets(server) == ["/models/alpha/1.0.0/notop.h5", "/models/beta/1.0.0/notop.h5"]
    ra, rb = a.records["notop"], b.records["notop"]
    assert ra.sha256 != rb.sha256 and ra.path != rb.path
    model_b = modelzoo.load("beta", cut="conv_pw_13_relu")
    _assert_weights(model_b, weights["beta", "1.0.0", "notop"])


def test_three_unhashed_artifacts_across_variants_and_versions(apps):
    server, weights = apps
    specs = [("alpha@1.0.0", "full"), ("alpha@1.1.0", "notop"), ("alpha@1.0.0", "notop")]
    records = [modelzoo.install(spec, variant=v).records[v] for spec, v in specs]
    assert sorted(_gets(server)) == [
        "/models/alpha/1.0.0/full.h5",
        "/models/alpha/1.0.0/notop.h5",
        "/models/alpha/1.1.0/notop.h5",
    ]
    assert len({r.sha256 for r in records}) == 3
    assert len(list(Cache().blobs_dir.rglob("*.h5"))) == 3
    assert [r.status for r in modelzoo.verify()] == ["ok"] * 3
    old = modelzoo.load("alpha@1.0.0", cut="conv_pw_13_relu")
    new = modelzoo.load("alpha@1.1.0", cut="conv_pw_13_relu")
    _assert_weights(old, weights["alpha", "1.0.0", "notop"])
    _assert_weights(new, weights["alpha", "1.1.0", "notop"])
    assert not np.array_equal(old.get_weights()[0], new.get_weights()[0])
    full = modelzoo.load("alpha@1.0.0", include_top=True)
    _assert_weights(full, weights["alpha", "1.0.0", "full"])


def test_dry_run_does_not_count_another_unhashed_file_as_cached(apps):
    server, _ = apps
    modelzoo.install("alpha@1.0.0", variant="notop")
    plan = modelzoo.install("beta", variant="notop", dry_run=True).planned["notop"]
    assert (plan.cached, plan.action, plan.path) == (False, "download", None)


# --------------------------------------------------------------------------- defect 2


def _flip_a_weight_byte(path: Path, dataset: str = "conv1/conv1/kernel:0") -> None:
    """Flip one byte inside a weight array of an HDF5 weights file, keeping its size."""
    import h5py

    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset()
    assert offset is not None  # contiguous storage: the array's bytes are at this offset
    size = path.stat().st_size
    path.chmod(0o644)
    with open(path, "r+b") as fh:
        fh.seek(offset + 5)
        byte = fh.read(1)
        fh.seek(offset + 5)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert path.stat().st_size == size


def test_a_corrupted_blob_is_refused_on_load_and_install_force_repairs_it(apps, monkeypatch):
    from modelzoo.errors import IntegrityError

    _, weights = apps
    rec = modelzoo.install("alpha@1.1.0", variant="notop").records["notop"]
    _flip_a_weight_byte(rec.path)
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    with pytest.raises(IntegrityError) as caught:
        modelzoo.load("alpha@1.1.0", cut="conv_pw_13_relu")
    message = str(caught.value)
    assert str(rec.path) in message and "modelzoo install alpha@1.1.0 --force" in message
    assert "\n" not in message and caught.value.path == str(rec.path)
    # negative control: the flipped byte really is inside the weights
    monkeypatch.setenv("MODELZOO_TRUST_CACHE", "1")
    trusted = modelzoo.load("alpha@1.1.0", cut="conv_pw_13_relu")
    assert not np.array_equal(trusted.get_weights()[0], weights["alpha", "1.1.0", "notop"][0])
    monkeypatch.delenv("MODELZOO_TRUST_CACHE")
    monkeypatch.delenv("MODELZOO_OFFLINE")
    modelzoo.install("alpha@1.1.0", variant="notop", force=True)
    repaired = modelzoo.load("alpha@1.1.0", cut="conv_pw_13_relu")
    _assert_weights(repaired, weights["alpha", "1.1.0", "notop"])


def test_verify_on_load_also_checks_when_the_scan_is_skipped(apps):
    from modelzoo.errors import IntegrityError

    rec = modelzoo.install("beta", variant="notop").records["notop"]
    _flip_a_weight_byte(rec.path)
    with pytest.raises(IntegrityError, match="modelzoo install beta@1.0.0 --force"):
        modelzoo.load("beta", cut="conv_pw_13_relu", trust_remote_code=True)


# --------------------------------------------------------------------------- defect 5: validation

_SHA = "ab" * 32


def test_uppercase_hex_is_accepted_and_normalised():
    from modelzoo.hub.manifest import Hash, parse_hash

    assert parse_hash("sha256:" + _SHA.upper()) == Hash("sha256", _SHA)
    assert parse_hash("MD5:" + "C" * 32) == Hash("md5", "c" * 32)


@pytest.mark.parametrize("bad", [f"sha256:{_SHA}\n", f"sha256:{_SHA} ", "md5:" + "a" * 31])
def test_a_hash_with_a_trailing_newline_is_refused(bad):
    from modelzoo.errors import ManifestError
    from modelzoo.hub.manifest import parse_hash

    with pytest.raises(ManifestError):
        parse_hash(bad)


def test_a_name_with_a_trailing_newline_is_refused(tmp_path):
    from modelzoo.errors import ManifestError
    from modelzoo.hub.manifest import NAME_RE, validate_name

    assert NAME_RE.fullmatch("name") and not NAME_RE.match("name\n")
    with pytest.raises(ManifestError):
        validate_name("name\n")


def test_cache_paths_never_take_a_value_with_a_trailing_newline(tmp_path):
    from modelzoo.errors import UsageError

    cache = Cache(tmp_path / "home")
    assert cache.blob_path(_SHA, ".h5").name == f"{_SHA}.h5"
    for sha, suffix in ((f"{_SHA}\n", ".h5"), (_SHA, ".h5\n")):
        with pytest.raises(UsageError):
            cache.blob_path(sha, suffix)


# --------------------------------------------------------------------------- defect 4


def _doc_with(url: str, mirrors=()) -> dict:
    art = {"url": url, "mirrors": list(mirrors), "format": "h5", "hash": None}
    return {
        "schema_version": 1,
        "name": "creds",
        "version": "1.0.0",
        "summary": "credentials test",
        "input": {"shape": [8, 8, 3]},
        "build": {"kind": "keras-model"},
        "artifacts": {"full": art},
    }


@pytest.mark.parametrize(
    ("url", "mirrors"),
    [
        ("http://user:s3cret@127.0.0.1/x.h5", ()),
        ("https://token@example.org/x.h5", ()),
        ("https://example.org/x.h5", ("https://user:s3cret@mirror.example.org/x.h5",)),
    ],
    ids=["url-password", "url-user", "mirror"],
)
def test_manifest_urls_with_credentials_are_refused(url, mirrors):
    from modelzoo.errors import ManifestError
    from modelzoo.hub.manifest import parse_manifest

    with pytest.raises(ManifestError, match="credentials") as caught:
        parse_manifest(_doc_with(url, mirrors), source="m.json")
    assert "s3cret" not in str(caught.value) and "\n" not in str(caught.value)


def test_mirror_rule_with_credentials_is_refused(monkeypatch):
    from modelzoo.errors import UsageError
    from modelzoo.hub.mirrors import rewrite_urls

    with pytest.raises(UsageError, match="credentials") as caught:
        rewrite_urls(["https://example.org/x.h5"], "https://u:s3cret@mirror.example.org/")
    assert "s3cret" not in str(caught.value)


def test_credentials_in_a_url_are_never_sent_nor_written(local_server, tmp_path):
    from modelzoo.errors import DownloadError
    from modelzoo.hub.download import download

    (local_server.root / "x.bin").write_bytes(b"x" * 100)
    host = local_server.url.split("//", 1)[1]
    with pytest.raises(DownloadError) as caught:
        download(f"http://user:s3cret@{host}/x.bin", tmp_path / "p" / "x.part")
    assert local_server.requests == []
    assert "s3cret" not in str(caught.value)


# --------------------------------------------------------------------------- defect 5: messages


@pytest.fixture
def reg(tmp_path, monkeypatch):
    """A generated registry folder (MODELZOO_REGISTRY) whose files a local server serves."""
    from _registry_fixture import TestRegistry

    with LocalServer(tmp_path / "registry") as server:
        registry_ = TestRegistry(tmp_path / "registry", base_url=server.url)
        monkeypatch.setenv("MODELZOO_REGISTRY", str(registry_.root))
        yield registry_, server


def test_a_new_version_sharing_bytes_says_installed_not_already_installed(reg):
    from _registry_fixture import make_bytes
    from typer.testing import CliRunner

    from modelzoo.cli import app

    registry_, server = reg
    data = make_bytes(20_000, seed="same")
    registry_.publish("pacman-net", "1.0.0", data={"full": data}, absolute=True)
    registry_.publish("pacman-net", "1.1.0", data={"full": data}, absolute=True)
    runner = CliRunner()
    first = runner.invoke(app, ["install", "pacman-net@1.0.0"], catch_exceptions=False)
    assert first.stdout.startswith("installed pacman-net@1.0.0 [full]")
    second = runner.invoke(app, ["install", "pacman-net@1.1.0"], catch_exceptions=False)
    assert second.exit_code == 0
    assert second.stdout.startswith("installed (bytes already in the cache) pacman-net@1.1.0")
    assert "already installed pacman" not in second.stdout
    third = runner.invoke(app, ["install", "pacman-net@1.1.0"], catch_exceptions=False)
    assert third.stdout.startswith("already installed pacman-net@1.1.0")
    assert len([p for p in server.paths("GET") if p.endswith(".h5")]) == 1


def test_a_mismatch_names_the_mirror_the_bytes_came_from(reg, monkeypatch):
    from modelzoo.errors import IntegrityError

    registry_, server = reg
    art = registry_.publish("tofu-m", variants={"full": 5000}, hash_algo=None, absolute=True)
    modelzoo.install("tofu-m")  # sha256 recorded on first use from the origin
    mirror = registry_.root / "mirror" / art["full"].served_path.lstrip("/")
    mirror.parent.mkdir(parents=True)
    mirror.write_bytes(b"y" * 5000)  # the mirror serves other bytes
    monkeypatch.setenv("MODELZOO_MIRROR", f"{server.url}/={server.url}/mirror/")
    with pytest.raises(IntegrityError) as caught:
        modelzoo.install("tofu-m", force=True)
    mirror_url = f"{server.url}/mirror{art['full'].served_path}"
    assert caught.value.url == mirror_url
    assert str(caught.value).split(" changed since")[0].endswith(f"the file at {mirror_url}")


def test_a_mismatch_after_a_redirect_names_where_the_bytes_came_from(local_server, tmp_path):
    import urllib.parse

    from modelzoo.errors import IntegrityError
    from modelzoo.hub.download import download

    (local_server.root / "other.bin").write_bytes(b"z" * 100)
    target = urllib.parse.quote(local_server.url + "/other.bin", safe="")
    asked = f"{local_server.url}/redirect/{target}"
    with pytest.raises(IntegrityError) as caught:
        download(asked, tmp_path / "p" / "x.part", expected="sha256:" + "0" * 64)
    assert caught.value.url == local_server.url + "/other.bin"
    assert f"(served from {local_server.url}/other.bin)" in str(caught.value)


def test_retry_after_is_honoured(local_server, tmp_path):
    import time

    from modelzoo.hub.download import download

    (local_server.root / "x.bin").write_bytes(b"x" * 1000)
    start = time.monotonic()
    download(f"{local_server.url}/first/1/retry-after/1/x.bin", tmp_path / "x.part", backoff=0.01)
    assert time.monotonic() - start >= 1.0  # not the 0.01 s backoff
    assert len(local_server.requests) == 2


def test_retry_after_is_capped(local_server, tmp_path, monkeypatch):
    import time

    from modelzoo.hub import http
    from modelzoo.hub.download import download

    monkeypatch.setattr(http, "RETRY_AFTER_CAP", 0.2)
    (local_server.root / "x.bin").write_bytes(b"x" * 1000)
    start = time.monotonic()
    download(f"{local_server.url}/first/1/retry-after/3600/x.bin", tmp_path / "x.part")
    assert time.monotonic() - start < 10


# --------------------------------------------------------------------------- defect 3: stalls


@pytest.fixture
def short_limits(monkeypatch):
    """Give up a URL delivering under 1000 bytes/s over 1 s; one retry."""
    monkeypatch.setenv("MODELZOO_MIN_RATE", "1000/1")
    monkeypatch.setenv("MODELZOO_MAX_RETRIES", "1")


@pytest.fixture
def silent_server():
    """Accepts connections and never answers (nothing at all, not even headers)."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def _timed_failure(url, partial, **kwargs):
    import time

    from modelzoo.errors import DownloadError
    from modelzoo.hub.download import download

    start = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        download(url, partial, **kwargs)
    return time.monotonic() - start, str(caught.value)


def test_a_slow_drip_fails_fast_keeps_its_bytes_and_resumes(local_server, tmp_path, short_limits):
    from modelzoo.hub.download import download

    data = bytes(range(256)) * 400
    (local_server.root / "x.bin").write_bytes(data)
    partial = tmp_path / "p" / "x.part"
    url = f"{local_server.url}/first/1/slow/1/x.bin"  # 1 byte/s once, then normal
    elapsed, message = _timed_failure(url, partial)
    assert elapsed < 5 and "stalled" in message and "MODELZOO_MIN_RATE" in message
    assert "\n" not in message and "kept and will be resumed" in message
    kept = partial.stat().st_size
    assert 0 < kept < len(data)
    result = download(url, partial)
    assert partial.read_bytes() == data and result.size == len(data)
    assert local_server.requests[-1].headers.get("Range") == f"bytes={kept}-"


def test_headers_then_nothing_fails_fast(local_server, tmp_path, short_limits):
    (local_server.root / "x.bin").write_bytes(b"x" * 1000)
    elapsed, message = _timed_failure(f"{local_server.url}/stall/60/x.bin", tmp_path / "x.part")
    assert elapsed < 5 and "stalled" in message and "\n" not in message


def test_nothing_at_all_fails_fast(silent_server, tmp_path, short_limits):
    elapsed, message = _timed_failure(f"{silent_server}/x.bin", tmp_path / "x.part")
    assert elapsed < 5 and "stalled" in message and "\n" not in message


def test_the_deadline_ends_a_slow_but_steady_download(local_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELZOO_MIN_RATE", "0")
    monkeypatch.setenv("MODELZOO_DEADLINE", "1")
    (local_server.root / "x.bin").write_bytes(b"x" * 100_000)
    elapsed, message = _timed_failure(f"{local_server.url}/slow/5000/x.bin", tmp_path / "x.part")
    assert elapsed < 5 and "deadline" in message and "MODELZOO_DEADLINE" in message


def test_a_stalled_install_is_one_line_and_a_later_install_resumes(reg, short_limits):
    from modelzoo.errors import DownloadError

    registry_, server = reg
    art = registry_.publish(
        "drip", variants={"full": 50_000}, absolute=True, url_prefix="first/1/slow/1/"
    )["full"]
    with pytest.raises(DownloadError) as caught:
        modelzoo.install("drip")
    assert "\n" not in str(caught.value) and "stalled" in str(caught.value)
    result = modelzoo.install("drip")
    assert result.path.read_bytes() == art.data
    assert server.requests[-1].headers.get("Range", "").startswith("bytes=")


@pytest.mark.parametrize(
    ("value", "variable"),
    [("abc", "MODELZOO_MIN_RATE"), ("-1", "MODELZOO_DEADLINE"), ("5/0", "MODELZOO_MIN_RATE")],
)
def test_unreadable_limits_are_one_line_usage_errors(monkeypatch, value, variable):
    from modelzoo import config
    from modelzoo.errors import UsageError

    monkeypatch.setenv(variable, value)
    with pytest.raises(UsageError, match=variable):
        config.min_rate() if variable == "MODELZOO_MIN_RATE" else config.deadline()


# --------------------------------------------------------------------------- item 6: one policy


@pytest.fixture
def netrc(tmp_path, monkeypatch):
    """~/.netrc credentials for 127.0.0.1 only (requests reads NETRC)."""
    path = tmp_path / "netrc"
    path.write_text("machine 127.0.0.1 login alice password s3cret\n", encoding="utf-8")
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    return path


def _cross_host(server, path: str) -> str:
    """A URL on 127.0.0.1 redirecting to ``path`` on localhost (another host, same server)."""
    import urllib.parse

    port = server.url.rsplit(":", 1)[1]
    return f"{server.url}/redirect/" + urllib.parse.quote(f"http://localhost:{port}{path}", safe="")


def _auth_by_host(server) -> list[tuple[str, bool]]:
    return [
        (r.headers.get("Host", "").split(":")[0], "Authorization" in r.headers)
        for r in server.requests
    ]


def test_netrc_credentials_are_sent_to_their_host_only_download(local_server, tmp_path, netrc):
    from modelzoo.hub.download import download

    (local_server.root / "x.bin").write_bytes(b"x" * 1000)
    download(_cross_host(local_server, "/x.bin"), tmp_path / "x.part")
    assert _auth_by_host(local_server) == [("127.0.0.1", True), ("localhost", False)]


def test_netrc_credentials_are_sent_to_their_host_only_head(reg, netrc):
    registry_, server = reg
    art = registry_.publish("headed", variants={"full": 777}, absolute=True, publish_size=False)
    doc_path = registry_.model_dir("headed", "1.0.0") / "manifest.json"
    doc = json.loads(doc_path.read_text(encoding="utf-8"))
    doc["artifacts"]["full"]["url"] = _cross_host(server, art["full"].served_path)
    doc_path.write_text(json.dumps(doc), encoding="utf-8")
    registry_.write_index()
    plan = modelzoo.install("headed", dry_run=True).planned["full"]
    assert plan.size == 777
    assert [r.method for r in server.requests] == ["HEAD", "HEAD"]
    assert _auth_by_host(server) == [("127.0.0.1", True), ("localhost", False)]


def test_netrc_credentials_are_sent_to_their_host_only_index(reg, netrc, monkeypatch):
    import urllib.parse

    registry_, server = reg
    registry_.publish("indexed", variants={"full": 100})
    port = server.url.rsplit(":", 1)[1]
    base = f"{server.url}/redirect/" + urllib.parse.quote(f"http://localhost:{port}", safe="")
    monkeypatch.setenv("MODELZOO_REGISTRY", base)
    assert [r.name for r in modelzoo.search("indexed")] == ["indexed"]
    assert _auth_by_host(server)[:2] == [("127.0.0.1", True), ("localhost", False)]


@pytest.fixture
def tls_server(tmp_path):
    import subprocess

    root = tmp_path / "tls"
    root.mkdir()
    try:
        srv = LocalServer(root, tls=True)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a TLS test server: {exc}")
    with srv:
        yield srv


def test_index_fetch_never_downgrades_https_to_http(tls_server, local_server, monkeypatch):
    import urllib.parse

    from modelzoo.errors import RegistryError
    from modelzoo.hub.remote import http_get

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_server.cafile)
    (tls_server.root / "index.json").write_text("{}", encoding="utf-8")
    assert http_get(f"{tls_server.url}/index.json").body == b"{}"  # https itself works
    target = urllib.parse.quote(local_server.url + "/index.json", safe="")
    with pytest.raises(RegistryError, match=r"may not change the scheme \(https -> http\)"):
        http_get(f"{tls_server.url}/redirect/{target}")
    assert local_server.requests == []


def test_head_never_downgrades_https_to_http(tls_server, local_server, monkeypatch):
    import urllib.parse

    from modelzoo.hub.http import head_size

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_server.cafile)
    (local_server.root / "x.bin").write_bytes(b"x" * 10)
    (tls_server.root / "x.bin").write_bytes(b"x" * 10)
    assert head_size(f"{tls_server.url}/x.bin") == 10  # https itself works
    target = urllib.parse.quote(local_server.url + "/x.bin", safe="")
    assert head_size(f"{tls_server.url}/redirect/{target}") is None
    assert local_server.requests == []


def test_head_and_index_cut_redirect_loops(local_server, monkeypatch):
    from modelzoo.errors import RegistryError
    from modelzoo.hub.http import MAX_REDIRECTS, head_size
    from modelzoo.hub.remote import http_get

    assert head_size(local_server.url + "/redirect/x") is None
    assert len(local_server.requests) == MAX_REDIRECTS + 1
    with pytest.raises(RegistryError, match=f"more than {MAX_REDIRECTS} redirects"):
        http_get(local_server.url + "/redirect/x")


def test_every_request_has_the_same_user_agent(reg, monkeypatch):
    registry_, server = reg
    registry_.publish("ua", variants={"full": 100}, absolute=True, publish_size=False)
    monkeypatch.setenv("MODELZOO_REGISTRY", server.url)  # index and manifest over http too
    modelzoo.install("ua", dry_run=True)
    modelzoo.install("ua")
    assert {r.method for r in server.requests} == {"GET", "HEAD"}
    assert any(r.path.endswith("index.json") for r in server.requests)
    agents = {r.headers.get("User-Agent") for r in server.requests}
    assert len(agents) == 1 and next(iter(agents)).startswith("modelzoo/")


def test_a_registry_url_with_credentials_is_refused(monkeypatch, caplog):
    from modelzoo.errors import UsageError

    monkeypatch.setenv("MODELZOO_REGISTRY", "http://alice:s3cret@127.0.0.1:9/")
    with pytest.raises(UsageError, match="credentials") as caught:
        modelzoo.search("anything")
    assert "s3cret" not in str(caught.value) and "s3cret" not in caplog.text
    assert not any("s3cret" in str(p) for p in Cache().root.rglob("*"))
