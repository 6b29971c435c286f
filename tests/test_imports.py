"""Start-up: the package and the package-manager commands never import TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_PROBE = """
import json, sys
heavy = ("tensorflow", "tf_keras", "keras", "h5py", "tuf", "securesystemslib")
argv = {argv!r}
if argv is None:
    import modelzoo
    modelzoo.search("mobilenet")
    modelzoo.info("vgg16") if modelzoo.search("vgg16") else None
    modelzoo.list_installed()
    code = 0
else:
    from modelzoo.cli import app
    try:
        app(argv, prog_name="modelzoo")
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
loaded = [m for m in heavy if m in sys.modules]
print(json.dumps({{"code": code, "heavy": loaded}}), file=sys.stderr)
"""


def _probe(argv, home):
    env = {**os.environ, "MODELZOO_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(argv=argv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    last = proc.stderr.strip().splitlines()[-1]
    return json.loads(last), proc


def test_import_and_api_calls_stay_tensorflow_free(_isolated_home):
    result, proc = _probe(None, _isolated_home)
    assert result == {"code": 0, "heavy": []}, proc.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["search", "mobilenet"],
        ["search", "--json"],
        ["info", "mobilenet_v1_0.25_32_digits"],
        ["list"],
        ["cache", "path"],
        ["cache", "size"],
        ["registry", "list"],
        ["install", "mobilenet_v1_0.25_32_digits", "--dry-run"],
    ],
)
def test_package_manager_commands_stay_tensorflow_free(argv, _isolated_home):
    result, proc = _probe(argv, _isolated_home)
    assert result == {"code": 0, "heavy": []}, proc.stderr
