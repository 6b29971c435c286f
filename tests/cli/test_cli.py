"""The CLI's package-manager commands, through typer's runner, on the bundled registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from modelzoo.cli import app

DIGITS = "mobilenet_v1_0.25_32_digits"


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args, **kwargs):
        return runner.invoke(app, list(args), catch_exceptions=False, **kwargs)

    return invoke


def test_version_and_help(run):
    assert run("--version").stdout.startswith("modelzoo ")
    assert "install" in run("--help").stdout


def test_search_table_and_json(run):
    res = run("search", "digits")
    assert res.exit_code == 0 and DIGITS in res.stdout
    data = json.loads(run("search", "digits", "--json").stdout)
    assert data[0]["name"] == DIGITS and data[0]["registry"] == "bundled"
    assert "No models match" in run("search", "zzzz-nothing").stdout


def test_info_shows_manifest_facts(run):
    res = run("info", DIGITS)
    assert res.exit_code == 0
    for fact in ("conv_pw_13_relu", "preprocessing", "CC-BY-4.0", "notop"):
        assert fact in res.stdout
    data = json.loads(run("info", DIGITS, "--json").stdout)
    assert data["name"] == DIGITS and data["installed"] == []


def test_unknown_model_is_one_line_with_suggestions_and_exit_1(run):
    res = run("info", "mobilenet_v1_0.25_32_digit")
    assert res.exit_code == 1
    assert res.stderr.count("\n") == 1
    assert "Did you mean" in res.stderr and DIGITS in res.stderr
    assert "Traceback" not in res.stderr


def test_debug_mode_shows_the_traceback(run, monkeypatch):
    monkeypatch.setenv("MODELZOO_DEBUG", "1")
    from modelzoo.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError):
        run("info", "no-such-model")


def test_install_list_verify_remove_cycle(run, _isolated_home):
    dry = run("install", DIGITS, "--variant", "all", "--dry-run", "--json")
    planned = json.loads(dry.stdout)[0]["planned"]
    assert set(planned) == {"full", "notop"} and not (_isolated_home / "blobs").exists()
    res = run("install", DIGITS, "--variant", "all")
    assert res.exit_code == 0 and res.stdout.count("installed ") == 2
    again = run("install", DIGITS)
    assert "already installed" in again.stdout
    listed = json.loads(run("list", "--json").stdout)
    assert {r["variant"] for r in listed} == {"full", "notop"}
    verified = json.loads(run("verify", "--json").stdout)
    assert [v["status"] for v in verified] == ["ok", "ok"]
    # corrupt one blob: verify fails with exit 1 and names it
    blob = listed[0]["path"]
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as fh:
        fh.write(b"\0")
    bad = run("verify")
    assert bad.exit_code == 1 and "mismatch" in bad.stdout
    removed = json.loads(run("remove", DIGITS, "--json").stdout)
    assert len(removed) == 2
    assert json.loads(run("list", "--json").stdout) == []
    assert not list((_isolated_home / "blobs").rglob("*.h5"))  # blobs no record needs are gone
    pruned = json.loads(run("cache", "prune", "--json").stdout)
    assert pruned["bytes_freed"] == 0


def test_cache_and_registry_commands(run, tmp_path, _isolated_home):
    assert run("cache", "path").stdout.strip() == str(_isolated_home)
    (_isolated_home / "blobs" / "sha256" / "00").mkdir(parents=True, exist_ok=True)
    (_isolated_home / "blobs" / "sha256" / "00" / ("0" * 64)).write_bytes(b"x" * 1000)
    (_isolated_home / "tmp").mkdir(parents=True, exist_ok=True)
    (_isolated_home / "tmp" / "y.part").write_bytes(b"y" * 24)
    sizes = json.loads(run("cache", "size", "--json").stdout)
    on_disk = sum(p.stat().st_size for p in _isolated_home.rglob("*") if p.is_file())
    assert sizes["blobs"] >= 1000 and sizes["tmp"] >= 24
    assert sizes["total"] == on_disk == sum(v for k, v in sizes.items() if k != "total")
    folder = tmp_path / "reg"
    (folder / "models").mkdir(parents=True)
    assert run("registry", "index", str(folder)).exit_code == 0
    added = json.loads(run("registry", "add", str(folder), "--name", "mine", "--json").stdout)
    assert added["name"] == "mine"
    names = [r["name"] for r in json.loads(run("registry", "list", "--json").stdout)]
    assert names == ["mine", "bundled"]
    assert run("registry", "remove", "mine").exit_code == 0
    assert run("cache", "clear", "--yes").exit_code == 0


def test_offline_install_of_a_bundled_model_works(run, monkeypatch):
    monkeypatch.setenv("MODELZOO_OFFLINE", "1")
    assert run("install", DIGITS).exit_code == 0


def test_console_script_and_python_m(_isolated_home):
    env = {**os.environ, "MODELZOO_HOME": str(_isolated_home)}
    proc = subprocess.run(
        [sys.executable, "-m", "modelzoo", "search", "digits", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["name"] == DIGITS
    proc = subprocess.run(
        [sys.executable, "-m", "modelzoo", "info", "nope"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stderr.startswith("error:")
