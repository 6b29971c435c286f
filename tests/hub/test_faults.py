"""Issue 13's fault tour: corrupt files, odd MODELZOO_HOME values, careless commands.

Every case drives the real CLI (typer's runner in-process, or a real subprocess where
the behaviour depends on a process boundary) against real files and local servers.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from _registry_fixture import TestRegistry
from typer.testing import CliRunner

from modelzoo.cli import app

DEEP = "[" * 100_000 + "]" * 100_000  # RecursionError in json.loads


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args, **kwargs):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return invoke


@pytest.fixture
def cli_in():
    """Like :func:`cli` but in this process (typer's runner): for cases where no process
    boundary matters, at a fraction of the start-up cost."""
    runner = CliRunner()

    def invoke(*args, env=None, input=None):
        res = runner.invoke(app, [str(a) for a in args], env=env, input=input)
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            raise res.exception
        return subprocess.CompletedProcess(args, res.exit_code, res.stdout, res.stderr)

    return invoke


def cli(*args, env=None, cwd=None, input=None):
    """Run ``python -m modelzoo ARGS`` in a real process (this checkout first on the path)."""
    full_env = {**os.environ, **(env or {})}
    root = str(Path(__file__).resolve().parents[2])
    full_env["PYTHONPATH"] = os.pathsep.join([root, full_env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "modelzoo", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        input=input,
        timeout=120,
    )


def one_line(res, *needles):
    """The command failed with one error line naming every needle, and no traceback."""
    assert res.exit_code == 1, (res.exit_code, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1, res.stderr
    for needle in needles:
        assert str(needle) in res.stderr, (needle, res.stderr)


# --------------------------------------------------------------------------- 13.7 JSON


def test_deeply_nested_index_is_one_line(run, tmp_path, monkeypatch):
    reg = TestRegistry(tmp_path / "reg")
    reg.publish("alpha")
    (reg.root / "index.json").write_text(DEEP)
    monkeypatch.setenv("MODELZOO_REGISTRY", str(reg.root))
    one_line(run("search", "alpha"), "index.json", "nests too deeply")


def test_deeply_nested_manifest_is_one_line(run, tmp_path, monkeypatch):
    reg = TestRegistry(tmp_path / "reg")
    reg.publish("alpha")
    (reg.model_dir("alpha", "1.0.0") / "manifest.json").write_text(DEEP)
    monkeypatch.setenv("MODELZOO_REGISTRY", str(reg.root))
    one_line(run("info", "alpha"), "manifest.json", "nests too deeply")


def test_deeply_nested_registry_config_is_one_line(run, _isolated_home):
    _isolated_home.mkdir()
    (_isolated_home / "config.json").write_text(DEEP)
    one_line(run("registry", "list"), "config.json", "nests too deeply")


def test_deeply_nested_lockfile_is_one_line(run, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "modelzoo.toml").write_text("[models]\n")
    (project / "modelzoo.lock").write_text(DEEP)
    one_line(run("install", "--frozen", "--project", project), "modelzoo.lock", "nests too deeply")


def test_deeply_nested_bundle_json_is_refused_in_one_line(run, tmp_path):
    bundle = tmp_path / "evil.tar"
    doc = DEEP.encode()
    sums = f"{hashlib.sha256(doc).hexdigest()}  bundle.json\n".encode()
    with tarfile.open(bundle, "w") as tar:
        for name, data in (("bundle.json", doc), ("SHA256SUMS", sums)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    one_line(run("unpack", bundle), "bundle.json", "nests too deeply")


def test_deeply_nested_install_record_is_skipped_with_a_warning(run, tmp_path, monkeypatch):
    reg = TestRegistry(tmp_path / "reg")
    reg.publish("alpha", variants={"full": 1000})
    monkeypatch.setenv("MODELZOO_REGISTRY", str(reg.root))
    assert run("install", "alpha").exit_code == 0
    record = Path(run("cache", "path").stdout.strip()) / "models/alpha/1.0.0/full.json"
    record.write_text(DEEP)
    res = run("list")
    assert res.exit_code == 0 and "Nothing installed" in res.stdout


# --------------------------------------------------------------------------- 13.8 verify


@pytest.mark.parametrize("content", [DEEP, "[1, 2]"])
def test_verify_with_a_corrupt_tofu_json_reports_it_and_verifies_the_rest(
    tmp_path, _isolated_home, content
):
    reg = TestRegistry(tmp_path / "reg")
    reg.publish("alpha", variants={"full": 1000})
    env = {"MODELZOO_REGISTRY": str(reg.root)}
    assert cli("install", "alpha", env=env).returncode == 0
    (_isolated_home / "tofu.json").write_text(content)
    res = cli("verify", env=env)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert "tofu.json" in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert "ok" in res.stdout and "alpha@1.0.0" in res.stdout  # the rest was verified


# --------------------------------------------------------------------------- 13.2 prune race

_PRUNER = """
import sys, time
from pathlib import Path
from modelzoo.hub.cache import Cache
stop, ready = Path(sys.argv[1]), Path(sys.argv[2])
ready.write_text("go")
while not stop.exists():
    Cache().prune()
"""


def test_install_racing_prune_never_loses_the_blob(tmp_path, monkeypatch):
    """A real process prunes in a tight loop while this one installs, verifies, removes."""
    import time

    import modelzoo

    reg = TestRegistry(tmp_path / "reg")
    reg.publish("alpha", variants={"full": 2000})
    monkeypatch.setenv("MODELZOO_REGISTRY", str(reg.root))
    stop, ready = tmp_path / "stop", tmp_path / "ready"
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    pruner = subprocess.Popen([sys.executable, "-c", _PRUNER, stop, ready], env=env)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert pruner.poll() is None and time.monotonic() < deadline, "pruner did not start"
            time.sleep(0.01)
        end = time.monotonic() + 4
        iterations = 0
        while iterations < 200 and time.monotonic() < end:
            modelzoo.install("alpha")
            results = modelzoo.verify("alpha")
            assert [r.status for r in results] == ["ok"], (iterations, results)
            modelzoo.remove("alpha")
            iterations += 1
        assert iterations >= 20  # the race was really exercised
    finally:
        stop.write_text("stop")
        pruner.wait(timeout=30)
    assert pruner.returncode == 0


# --------------------------------------------------------------------------- 13.1 cache clear


def _user_files(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.tex").write_text("\\documentclass{article}")
    (folder / "docs").mkdir()
    (folder / "docs" / "a.txt").write_text("notes")


def _assert_user_files(folder: Path) -> None:
    assert (folder / "thesis.tex").read_text() == "\\documentclass{article}"
    assert (folder / "docs" / "a.txt").read_text() == "notes"


def test_cache_clear_refuses_a_folder_modelzoo_did_not_create(tmp_path):
    home = tmp_path / "home"
    _user_files(home)
    res = cli("cache", "clear", "-y", env={"MODELZOO_HOME": str(home)})
    assert res.returncode == 1, res
    assert res.stderr.count("\n") == 1 and "Refusing to clear" in res.stderr, res.stderr
    assert "thesis.tex" in res.stderr and "Traceback" not in res.stderr
    _assert_user_files(home)


def test_cache_clear_after_installing_into_a_users_folder_keeps_the_users_files(tmp_path, cli_in):
    home = tmp_path / "home"
    _user_files(home)
    reg = TestRegistry(tmp_path / "reg")
    reg.publish("alpha", variants={"full": 1000})
    env = {"MODELZOO_HOME": str(home), "MODELZOO_REGISTRY": str(reg.root)}
    assert cli_in("install", "alpha", env=env).returncode == 0
    assert not (home / "CACHEDIR.TAG").exists()  # never claimed: it held other files
    res = cli_in("cache", "clear", "-y", env=env)
    assert res.returncode == 1 and "Refusing to clear" in res.stderr
    _assert_user_files(home)
    assert (home / "models" / "alpha").is_dir()  # nothing deleted at all


def test_cache_clear_deletes_only_modelzoos_own_entries(tmp_path, cli_in):
    home = tmp_path / "home"
    reg = TestRegistry(tmp_path / "reg")
    reg.publish("alpha", variants={"full": 1000})
    env = {"MODELZOO_HOME": str(home), "MODELZOO_REGISTRY": str(reg.root)}
    assert cli_in("registry", "add", reg.root, env=env).returncode == 0
    assert cli_in("install", "alpha", env=env).returncode == 0
    assert "created by modelzoo" in (home / "CACHEDIR.TAG").read_text()
    (home / "mine.txt").write_text("put here by the user later")
    res = cli_in("cache", "clear", "-y", env=env)
    assert res.returncode == 0, res.stderr
    assert not (home / "blobs").exists() and not (home / "models").exists()
    assert (home / "mine.txt").exists() and (home / "config.json").exists()
    assert (home / "CACHEDIR.TAG").exists()


def test_cache_clear_adopts_a_cache_made_before_the_marker(tmp_path, cli_in):
    home = tmp_path / "home"
    reg = TestRegistry(tmp_path / "reg")
    reg.publish("alpha", variants={"full": 1000})
    env = {"MODELZOO_HOME": str(home), "MODELZOO_REGISTRY": str(reg.root)}
    assert cli_in("install", "alpha", env=env).returncode == 0
    (home / "CACHEDIR.TAG").unlink()  # as an older modelzoo left it
    res = cli_in("cache", "clear", "-y", env=env)
    assert res.returncode == 0, res.stderr
    assert not (home / "blobs").exists() and (home / "CACHEDIR.TAG").exists()


def test_cache_clear_lists_what_it_deletes_and_answering_no_deletes_nothing(tmp_path, cli_in):
    home = tmp_path / "home"
    reg = TestRegistry(tmp_path / "reg")
    reg.publish("alpha", variants={"full": 1000})
    env = {"MODELZOO_HOME": str(home), "MODELZOO_REGISTRY": str(reg.root)}
    assert cli_in("install", "alpha", env=env).returncode == 0
    res = cli_in("cache", "clear", env=env, input="n\n")
    assert res.returncode == 0, res.stderr
    assert "blobs" in res.stdout and "models" in res.stdout and "1.0 kB" in res.stdout
    assert res.stdout.index("blobs") < res.stdout.index("Delete these")
    assert "Nothing was deleted." in res.stdout
    assert (home / "blobs").is_dir() and (home / "models" / "alpha").is_dir()


# --------------------------------------------------------------------------- 13.3 file:// URLs


def _http_registry(tmp_path, server_root: Path, url: str) -> None:
    """A registry under ``server_root`` whose one manifest (alpha) points at ``url``."""
    reg = TestRegistry(server_root)
    reg.publish("alpha", variants={"full": 100}, hash_algo=None)
    path = reg.model_dir("alpha", "1.0.0") / "manifest.json"
    doc = json.loads(path.read_text())
    doc["artifacts"]["full"]["url"] = url
    doc["artifacts"]["full"].pop("size", None)
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "url", ["file:///etc/hostname", "FILE:///etc/hostname", "//example.invalid/full.h5"]
)
def test_http_registry_cannot_point_artifacts_at_local_files_or_other_hosts(
    tmp_path, local_server, _isolated_home, url, cli_in
):
    _http_registry(tmp_path, local_server.root, url)
    env = {"MODELZOO_REGISTRY": local_server.url}
    for args in (("install", "alpha"), ("install", "alpha", "--dry-run")):
        res = cli_in(*args, env=env)
        assert res.returncode == 1, res.stdout
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
        reasons = ("only in manifests from a local folder registry", "inside the registry")
        assert any(r in res.stderr for r in reasons), res.stderr
    assert not (_isolated_home / "blobs").exists() and not (_isolated_home / "models").exists()
    assert not (_isolated_home / "tofu.json").exists()


def test_folder_registry_may_use_file_urls(tmp_path, run, monkeypatch):
    target = tmp_path / "elsewhere.h5"
    target.write_bytes(b"x" * 100)
    reg_root = tmp_path / "reg"
    _http_registry(tmp_path, reg_root, target.as_uri())
    monkeypatch.setenv("MODELZOO_REGISTRY", str(reg_root))
    assert run("install", "alpha").exit_code == 0


# --------------------------------------------------------------------------- 13.4 / 13.5 publish


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory):
    from modelzoo.backend import keras

    k = keras()
    inp = k.Input((8, 8, 3), name="image")
    out = k.layers.Dense(2, activation="softmax", name="probs")(k.layers.Flatten()(inp))
    path = tmp_path_factory.mktemp("saved") / "tiny.keras"
    k.Model(inp, out, name="tiny_net").save(path)
    return path


def _env():
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def _popen_cli(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "modelzoo", *map(str, args)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.tf
def test_publish_killed_mid_way_then_published_again_with_the_umasks_permissions(
    tmp_path, tiny_model_file, caplog
):
    from modelzoo.models.publish import publish

    """SIGKILL leaves a staging folder: `registry verify` reports it, the next publish
    removes it, and every published file gets the umask's normal mode (13.4, 13.5)."""
    import signal
    import time

    reg = tmp_path / "reg"
    args = ("publish", tiny_model_file, "--name", "tiny", "--version", "1.0.0", "--registry", reg)
    proc = _popen_cli(*args)
    deadline = time.monotonic() + 120
    while not list(reg.glob(".publish-*/*")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    leftovers = list(reg.glob(".publish-*"))
    assert len(leftovers) == 1 and not (reg / "models" / "tiny" / "1.0.0").exists()

    res = cli("registry", "verify", reg)
    assert res.returncode == 1 and "leftover" in res.stdout and leftovers[0].name in res.stdout

    umask = 0o027  # not the usual 022: the mode must follow the umask, not a constant
    want = 0o666 & ~umask
    folder = reg / "models" / "tiny" / "1.0.0"
    old = os.umask(umask)
    try:  # in this process: TensorFlow is loaded already, a second start-up proves nothing
        with caplog.at_level("WARNING", logger="modelzoo"):
            publish(tiny_model_file, name="tiny", version="1.0.0", registry=reg)
        for path in (reg / "index.json", folder / "manifest.json", folder / "tiny.keras"):
            assert path.stat().st_mode & 0o777 == want, (path, oct(path.stat().st_mode))
        (reg / "index.json").unlink()
        index_writer = subprocess.run(  # inherits the umask
            [sys.executable, "-m", "modelzoo", "registry", "index", reg],
            env=_env(),
            capture_output=True,
        )
    finally:
        os.umask(old)
    assert index_writer.returncode == 0, index_writer.stderr
    assert (reg / "index.json").stat().st_mode & 0o777 == want
    assert "interrupted publish" in caplog.text
    assert not list(reg.glob(".publish-*"))
    assert cli("registry", "verify", reg).returncode == 0


def test_pack_killed_mid_way_leaves_a_tmp_file_the_next_pack_removes(tmp_path, monkeypatch):
    import signal
    import time

    import modelzoo

    reg = TestRegistry(tmp_path / "reg")
    reg.publish("big", data={"full": os.urandom(24 << 20)})  # random: gzip is slow on it
    monkeypatch.setenv("MODELZOO_REGISTRY", str(reg.root))
    modelzoo.install("big")
    out = tmp_path / "out"
    out.mkdir()
    proc = _popen_cli("pack", "big", "-o", out / "b.tar.gz")
    deadline = time.monotonic() + 60
    while not list(out.glob(".b.tar.gz.*.tmp")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert len(list(out.glob(".b.tar.gz.*.tmp"))) == 1 and not (out / "b.tar.gz").exists()
    res = cli("pack", "big", "-o", out / "b.tar.gz")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["b.tar.gz"]


# --------------------------------------------------------------------------- 13.6 / 12.7 indexes


def _served_registry(local_server, *versions: str) -> TestRegistry:
    reg = TestRegistry(local_server.root)
    for version in versions:
        reg.publish("alpha", version, variants={"full": 500})
    return reg


def _cached(home: Path, name: str) -> Path:
    (path,) = home.glob(f"registries/*/{name}")
    return path


def _index_gets(server) -> list:
    return [r for r in server.requests if r.method == "GET" and r.path == "/index.json"]


@pytest.mark.parametrize("damage", [DEEP, '{"schema_version": 1}'])
def test_a_damaged_cached_index_is_dropped_and_fetched_again(
    local_server, _isolated_home, damage, cli_in
):
    _served_registry(local_server, "1.0.0")
    env = {"MODELZOO_REGISTRY": local_server.url}
    assert cli_in("search", "alpha", env=env).returncode == 0
    cached = _cached(_isolated_home, "index.json")
    cached.write_text(damage)
    res = cli("info", "alpha", env=env)
    assert res.returncode == 0, res.stderr
    assert "alpha@1.0.0" in res.stdout
    assert res.stderr.count("\n") == 1 and "damaged; fetching it again" in res.stderr
    assert json.loads(cached.read_text())["models"][0]["name"] == "alpha"
    assert len(_index_gets(local_server)) == 2

    cached.write_text(damage)  # offline: cannot refetch, so say what happened in one line
    res = cli("info", "alpha", env={**env, "MODELZOO_OFFLINE": "1"})
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "damaged" in res.stderr and "go online" in res.stderr


def test_a_damaged_cached_manifest_is_dropped_and_fetched_again(
    local_server, _isolated_home, cli_in
):
    _served_registry(local_server, "1.0.0")
    env = {"MODELZOO_REGISTRY": local_server.url}
    assert cli_in("info", "alpha", env=env).returncode == 0
    cached = _cached(_isolated_home, "models/alpha/1.0.0/manifest.json")
    cached.write_text("[" * 50)
    res = cli_in("install", "alpha@1.0.0", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(cached.read_text())["name"] == "alpha"


def test_info_and_install_refresh_fetch_again_within_the_ttl(local_server, _isolated_home, cli_in):
    reg = _served_registry(local_server, "1.0.0")
    env = {"MODELZOO_REGISTRY": local_server.url}
    assert "alpha@1.0.0" in cli_in("info", "alpha", env=env).stdout
    reg.publish("alpha", "1.1.0", variants={"full": 500})
    assert "alpha@1.0.0" in cli_in("info", "alpha", env=env).stdout  # cached for 10 minutes
    assert "alpha@1.1.0" in cli_in("info", "alpha", "--refresh", env=env).stdout
    reg.publish("alpha", "1.2.0", variants={"full": 500})
    res = cli_in("install", "alpha@^1", "--refresh", env=env)
    assert res.returncode == 0 and "alpha@1.2.0" in res.stdout, res.stderr


def test_outdated_and_install_revalidate_remote_indexes_with_conditional_gets(
    local_server, _isolated_home, cli_in
):
    """Revalidating commands run in fresh processes (one conditional GET per process and
    index); the ones that must not touch the network run in this one."""
    reg = _served_registry(local_server, "1.0.0")
    env = {"MODELZOO_REGISTRY": local_server.url}
    assert cli_in("install", "alpha", env=env).returncode == 0
    assert len(_index_gets(local_server)) == 1

    res = cli("outdated", "--json", env=env)  # unchanged: one conditional GET, a 304
    assert json.loads(res.stdout)[0]["latest"] == "1.0.0"
    gets = _index_gets(local_server)
    assert len(gets) == 2 and "If-None-Match" in gets[-1].headers
    assert local_server.not_modified == 1

    reg.publish("alpha", "1.1.0", variants={"full": 500})  # seconds later, well inside the TTL
    res = cli("outdated", "--json", env=env)
    assert json.loads(res.stdout)[0]["latest"] == "1.1.0", res.stderr
    assert local_server.not_modified == 1 and len(_index_gets(local_server)) == 3

    reg.publish("alpha", "1.2.0", variants={"full": 500})
    for res in (
        cli_in("outdated", "--json", "--offline", env=env),
        cli_in("outdated", "--json", env={**env, "MODELZOO_OFFLINE": "1"}),
    ):
        assert json.loads(res.stdout)[0]["latest"] == "1.1.0"  # the cached index, as asked
    assert len(_index_gets(local_server)) == 3  # --offline / MODELZOO_OFFLINE: no request
    res = cli("outdated", "--json", env=env)
    assert json.loads(res.stdout)[0]["latest"] == "1.2.0"
    assert len(_index_gets(local_server)) == 4

    reg.publish("alpha", "1.3.0", variants={"full": 500})
    res = cli("install", "alpha", env=env)  # no version: "latest" is asked for
    assert res.returncode == 0 and "alpha@1.3.0" in res.stdout, res.stderr
    res = cli_in("install", "alpha@1.3.0", env=env)  # pinned and installed: no request
    assert res.returncode == 0 and len(_index_gets(local_server)) == 5


# --------------------------------------------------------------------------- 13.7 odd homes / env


@pytest.fixture
def read_only_home(tmp_path):
    """An existing, read-only MODELZOO_HOME (a read-only bind mount when running as root,
    since root ignores permission bits)."""
    home = tmp_path / "ro-home"
    home.mkdir()
    if os.geteuid() != 0:
        home.chmod(0o555)
        yield home
        home.chmod(0o755)
        return
    src = tmp_path / "ro-src"
    src.mkdir()
    mounted = subprocess.run(["mount", "--bind", src, home], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot make a read-only folder as root here: {mounted.stderr!r}")
    try:
        remount = subprocess.run(["mount", "-o", "remount,ro,bind", home], capture_output=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr!r}")
        yield home
    finally:
        subprocess.run(["umount", home], capture_output=True)


def test_read_only_home_registry_add_is_one_line(read_only_home, tmp_path):
    reg = TestRegistry(tmp_path / "reg")
    reg.publish("alpha")
    res = cli("registry", "add", reg.root, env={"MODELZOO_HOME": str(read_only_home)})
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1 and "read-only" in res.stderr, res.stderr


def test_read_only_home_search_with_an_http_registry_still_answers(read_only_home, local_server):
    TestRegistry(local_server.root).publish("alpha")
    env = {"MODELZOO_HOME": str(read_only_home), "MODELZOO_REGISTRY": local_server.url}
    res = cli("search", "alpha", env=env)
    assert res.returncode == 0 and "alpha" in res.stdout, res.stderr
    assert res.stderr.count("\n") == 1 and "Cannot cache" in res.stderr, res.stderr


@pytest.mark.parametrize("var", ["MODELZOO_REGISTRY", "MODELZOO_MIRROR"])
def test_an_invalid_ipv6_url_is_one_line(tmp_path, local_server, var, cli_in):
    reg = TestRegistry(tmp_path / "reg")
    reg.publish("alpha", variants={"full": 100})
    env = {"MODELZOO_REGISTRY": str(reg.root), var: "http://[::1"}
    res = cli_in("install", "alpha", env=env)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.count("\n") == 1 and "[::1" in res.stderr, res.stderr
    if var == "MODELZOO_REGISTRY":
        res = cli_in("registry", "add", "http://[::1")
        assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr


def test_modelzoo_home_being_a_file_is_one_line_and_fails(tmp_path, cli_in):
    home = tmp_path / "a-file"
    home.write_text("not a folder")
    for args in (("list",), ("registry", "list"), ("cache", "clear", "-y")):
        res = cli_in(*args, env={"MODELZOO_HOME": str(home)})
        assert res.returncode == 1, (args, res.stdout)
        assert res.stderr.count("\n") == 1 and "is a file, not a folder" in res.stderr, res.stderr
    assert home.read_text() == "not a folder"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("MODELZOO_TIMEOUT", "abc"),
        ("MODELZOO_TIMEOUT", "-5"),
        ("MODELZOO_MAX_RETRIES", "many"),
        ("MODELZOO_MAX_RETRIES", "-1"),
        ("MODELZOO_DEADLINE", "soon"),
        ("MODELZOO_MIN_RATE", "fast"),
        ("MODELZOO_CPU_DEVICES", "x"),
    ],
)
def test_invalid_numeric_environment_variables_are_named(var, value):
    from modelzoo import config
    from modelzoo.errors import UsageError

    readers = {
        "MODELZOO_TIMEOUT": config.timeouts,
        "MODELZOO_MAX_RETRIES": config.max_retries,
        "MODELZOO_DEADLINE": config.deadline,
        "MODELZOO_MIN_RATE": config.min_rate,
        "MODELZOO_CPU_DEVICES": config.cpu_devices,
    }
    os.environ[var] = value
    try:
        with pytest.raises(UsageError, match=var):
            readers[var]()
    finally:
        del os.environ[var]


def test_invalid_timeout_through_the_cli_is_one_line(local_server, cli_in):
    TestRegistry(local_server.root).publish("alpha")
    env = {"MODELZOO_REGISTRY": local_server.url, "MODELZOO_TIMEOUT": "abc"}
    res = cli_in("install", "alpha", env=env)
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert "MODELZOO_TIMEOUT" in res.stderr and "'abc'" in res.stderr


# --------------------------------------------------------------------------- 13.9 export --out


@pytest.mark.tf
def test_export_refuses_a_non_empty_folder_without_an_earlier_export(
    tmp_path, tiny_model_file, run
):
    out = tmp_path / "site"
    _user_files(out)
    (out / "model.json").write_text('{"mine": true}')
    res = run("export", tiny_model_file, "--out", out)
    one_line(res, "not empty", "--force")
    _assert_user_files(out)
    assert json.loads((out / "model.json").read_text()) == {"mine": True}
    assert sorted(p.name for p in out.iterdir()) == ["docs", "model.json", "thesis.tex"]

    res = run("export", tiny_model_file, "--out", out, "--force")
    assert res.exit_code == 0, res.stderr
    _assert_user_files(out)  # --force replaces only the export's own files
    assert json.loads((out / "model.json").read_text())["convertedBy"] == "modelzoo"

    again = run("export", tiny_model_file, "--out", out)  # an earlier export: no --force
    assert again.exit_code == 0, again.stderr


@pytest.mark.tf
def test_export_writes_into_an_empty_folder_or_an_export_made_before_the_marker(
    tmp_path, tiny_model_file, run
):
    out = tmp_path / "empty"
    out.mkdir()
    assert run("export", tiny_model_file, "--out", out).exit_code == 0
    (out / ".modelzoo-export").unlink()  # as an older modelzoo left it
    assert run("export", tiny_model_file, "--out", out).exit_code == 0
    assert (out / ".modelzoo-export").is_file()


def test_registry_refresh_warning_is_one_short_line(local_server, _isolated_home):
    _served_registry(local_server, "1.0.0")
    env = {"MODELZOO_REGISTRY": local_server.url, "MODELZOO_MAX_RETRIES": "0"}
    assert cli("search", "alpha", env=env).returncode == 0
    cached = _cached(_isolated_home, "index.json")
    os.utime(cached, (cached.stat().st_atime, cached.stat().st_mtime - 3600))  # past the TTL
    local_server.close()  # the registry goes away
    res = cli("search", "alpha", env=env)
    assert res.returncode == 0 and "alpha" in res.stdout
    assert res.stderr.count("\n") == 1, res.stderr
    assert "using the copy cached 60 minute(s) ago" in res.stderr
    assert len(res.stderr) < 300 and "urllib3" not in res.stderr and "Max retries" not in res.stderr


def test_prune_beside_a_running_unpack_keeps_its_staging_folder(tmp_path, monkeypatch):
    """`cache prune --partials` while a real `modelzoo unpack` process is extracting."""
    import time

    import modelzoo
    from modelzoo.hub.cache import Cache

    reg = TestRegistry(tmp_path / "reg")
    reg.publish("big", data={"full": os.urandom(16 << 20)})
    monkeypatch.setenv("MODELZOO_REGISTRY", str(reg.root))
    bundle = tmp_path / "big.tar"
    from modelzoo.hub.bundle import pack

    pack(["big"], output=bundle)
    modelzoo.remove("big")
    cache = Cache()
    cache.prune()
    proc = _popen_cli("unpack", bundle)
    deadline = time.monotonic() + 60
    while not list(cache.tmp_dir.glob("unpack-*/*")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.002)
    pruned = cache.prune(partials=True)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert not [p for p in pruned.partials if "unpack-" in str(p)]
    assert [r.status for r in modelzoo.verify("big")] == ["ok"]
