"""Issue 13's fault tour: corrupt files, odd MODELZOO_HOME values, careless commands.

Every case drives the real CLI (typer's runner in-process, or a real subprocess where
the behaviour depends on a process boundary) against real files and local servers.
"""

from __future__ import annotations

import hashlib
import io
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


def cli(*args, env=None, cwd=None, input=None):
    """Run ``python -m modelzoo ARGS`` in a real process (this checkout first on the path)."""
    full_env = {**os.environ, **(env or {})}
    root = str(Path(__file__).resolve().parent.parent)
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


@pytest.mark.parametrize("content", [DEEP, "{not json", "[1, 2]"])
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
from modelzoo.cache import Cache
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
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    pruner = subprocess.Popen([sys.executable, "-c", _PRUNER, stop, ready], env=env)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert pruner.poll() is None and time.monotonic() < deadline, "pruner did not start"
            time.sleep(0.01)
        end = time.monotonic() + 8
        iterations = 0
        while iterations < 400 and time.monotonic() < end:
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
