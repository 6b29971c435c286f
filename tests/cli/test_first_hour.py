"""A new user's first hour (issue 12): labels sidecar, quiet TensorFlow, fast input checks,
``--help`` texts, optional extras checked up front, a trained model that loads cleanly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelzoo.cli import app

DIGITS = "mobilenet_v1_0.25_32_digits"

# A line of TensorFlow's C++ (absl) logging: "I0000 00:00:1796.. 123 file.cc:31] ..." and
# absl's pre-initialisation banner.
TF_CPP_LINE = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./-]+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\))",
    re.M,
)


def _cli(*args, env_extra=None, drop=(), timeout=180):
    """Run ``python -m modelzoo ARGS`` in a real process (the tree under test first)."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "modelzoo", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


# --------------------------------------------------------------------------- --help


def _commands(group, prefix=()):
    import typer.main

    click_group = typer.main.get_command(app) if group is None else group
    for name, cmd in click_group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


def test_every_option_of_every_command_explains_itself():
    runner = CliRunner()
    commands = list(_commands(None))
    assert len(commands) >= 20
    missing, bad_usage = [], []
    for path, cmd in commands:
        for param in cmd.params:
            if param.param_type_name == "option" and not (param.help or "").strip():
                missing.append(f"{' '.join(path)} {param.opts[0]}")
        res = runner.invoke(app, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        usage = res.output.split("\n\n")[0]
        assert usage.startswith("Usage: "), res.output
        if re.search(r"[{}<>]", usage) or "<list" in res.output:
            bad_usage.append(f"{' '.join(path)}: {res.output[:300]}")
    assert not missing, f"options without help: {missing}"
    assert not bad_usage, bad_usage


def test_json_is_one_shared_option():
    from modelzoo.cli import _options

    seen = 0
    for _path, cmd in _commands(None):
        for param in cmd.params:
            if "--json" in param.opts:
                seen += 1
                assert param.help == _options.JSON_HELP
    assert seen >= 20


# --------------------------------------------------------------------------- fast failures


def test_predict_with_a_missing_image_fails_before_tensorflow(tmp_path):
    probe = (
        "import sys\n"
        "from modelzoo.cli import app\n"
        "try:\n"
        f"    app(['predict', {DIGITS!r}, {str(tmp_path / 'nope.png')!r}], prog_name='modelzoo')\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code, file=sys.stderr)\n"
        "print('tensorflow' in sys.modules, file=sys.stderr)\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    elapsed = time.perf_counter() - t0
    lines = proc.stderr.strip().splitlines()
    assert lines[-2:] == ["exit 1", "False"], proc.stderr
    assert len(lines) == 3 and "nope.png" in lines[0], proc.stderr
    assert elapsed < 8, elapsed  # TensorFlow's import alone takes longer here


def test_plot_without_matplotlib_fails_before_training(tmp_path, image_folder):
    shim = tmp_path / "shim" / "matplotlib"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    out = tmp_path / "m.keras"
    proc = _cli(
        *("train", DIGITS, "--data", image_folder, "--epochs", 1),
        *("--out", out, "--plot", tmp_path / "curves.png"),
        env_extra={
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), str(shim.parent)])
        },
    )
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "matplotlib" in lines[0] and "modelzoo[viz]" in lines[0], lines
    assert not out.exists()
    assert "strategy" not in proc.stdout  # nothing started


# --------------------------------------------------------------------------- a trained model


@pytest.fixture(scope="module")
def trained(tmp_path_factory, image_folder):
    """A model trained by ``modelzoo train`` (1 epoch, bundled base) and its sidecar."""
    home = tmp_path_factory.mktemp("home")
    out = tmp_path_factory.mktemp("trained") / "digits56.keras"
    old = os.environ.get("MODELZOO_HOME")
    os.environ["MODELZOO_HOME"] = str(home)
    try:
        res = CliRunner().invoke(
            app,
            [
                *("train", DIGITS, "--data", str(image_folder), "--epochs", "1"),
                *("--batch-size", "4", "--val-split", "0", "--out", str(out), "--json"),
            ],
            catch_exceptions=False,
        )
    finally:
        if old is None:
            os.environ.pop("MODELZOO_HOME")
        else:
            os.environ["MODELZOO_HOME"] = old
    assert res.exit_code == 0, res.output
    return out


@pytest.mark.tf
def test_train_writes_the_documented_sidecar(trained):
    side = trained.with_name("digits56.labels.json")
    meta = json.loads(side.read_text())
    assert meta["labels"] == ["digit_5", "digit_6"]
    assert not [p for p in trained.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.tf
def test_predict_reads_the_object_and_the_plain_list_forms(trained, image_folder, tmp_path):
    import shutil

    model = tmp_path / "m.keras"
    shutil.copy(trained, model)
    side = tmp_path / "m.labels.json"
    image = next((image_folder / "digit_6").glob("*.png"))
    run = CliRunner().invoke
    for doc in (
        json.loads(trained.with_name("digits56.labels.json").read_text()),
        ["digit_5", "digit_6"],
    ):
        side.write_text(json.dumps(doc))
        res = run(app, ["predict", str(model), str(image), "--json"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        assert {p["label"] for p in json.loads(res.stdout)[0]["top"]} == {"digit_5", "digit_6"}
    for bad in ("{not json", '{"labels": 3}', '["a", 2]', "42"):
        side.write_text(bad)
        res = run(app, ["predict", str(model), str(image)], catch_exceptions=False)
        assert res.exit_code == 1, (bad, res.output)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "m.labels.json" in lines[0], (bad, lines)


@pytest.mark.tf
def test_publish_labels_accepts_the_sidecar_train_wrote(trained, tmp_path):
    run = CliRunner().invoke
    registry = tmp_path / "zoo"
    side = trained.with_name("digits56.labels.json")
    res = run(
        app,
        [
            *("publish", str(trained), "--name", "d56", "--version", "1.0.0"),
            *("--registry", str(registry), "--labels", str(side), "--json"),
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    manifest = json.loads((registry / "models" / "d56" / "1.0.0" / "manifest.json").read_text())
    assert manifest["labels"] == ["digit_5", "digit_6"]
    plain = tmp_path / "plain.json"
    plain.write_text('["five", "six"]')
    bad = tmp_path / "bad.json"
    bad.write_text('{"labels": "five"}')
    for labels, code in ((plain, 0), (bad, 1)):
        res = run(
            app,
            [
                *("publish", str(trained), "--name", "d56", "--version", f"1.0.{code + 1}"),
                *("--registry", str(registry), "--labels", str(labels)),
            ],
            catch_exceptions=False,
        )
        assert res.exit_code == code, res.output
        if code:
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and "bad.json" in lines[0], lines


@pytest.mark.tf
@pytest.mark.slow
def test_predict_is_quiet_by_default(trained, image_folder):
    image = next((image_folder / "digit_5").glob("*.png"))
    quiet = _cli("predict", trained, image, drop=("TF_CPP_MIN_LOG_LEVEL",))
    assert quiet.returncode == 0, quiet.stderr
    assert "digit_" in quiet.stdout
    assert not TF_CPP_LINE.search(quiet.stderr), quiet.stderr
    assert quiet.stderr.strip() == "", quiet.stderr


_VERBOSE_THEN_PLAIN_LOAD = """
import sys
from modelzoo.cli import app
try:
    app(["-v", "predict", sys.argv[1], sys.argv[2]], prog_name="modelzoo")
except SystemExit as exc:
    assert not exc.code, exc.code
import tf_keras
m = tf_keras.models.load_model(sys.argv[1])  # compiled, as a plain Keras user loads it
print("iterations", int(m.optimizer.iterations.numpy()))
"""


@pytest.mark.tf
@pytest.mark.slow
def test_verbose_shows_tf_logs_and_a_trained_model_loads_without_optimizer_warnings(
    trained, image_folder
):
    image = next((image_folder / "digit_5").glob("*.png"))
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", _VERBOSE_THEN_PLAIN_LOAD, str(trained), str(image)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    # -v shows TensorFlow's own logging (a CPU-only machine like CI always has some) ...
    assert TF_CPP_LINE.search(proc.stderr), proc.stderr
    # ... and Python warnings, among which there must be no stale optimizer state.
    assert "Skipping variable loading" not in proc.stderr, proc.stderr
    # the saved optimizer state is the head's, which stepped once per training batch
    assert int(proc.stdout.split("iterations")[-1]) > 0, proc.stdout
