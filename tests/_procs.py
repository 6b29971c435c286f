"""The one harness for tests that run real processes side by side (workers, clusters).

:func:`run_all` starts every job at once with this interpreter, waits for all of them
against one deadline and SIGKILLs whatever is still alive at the end, whatever happened;
:func:`ok` turns a finished job into its JSON result or a failure that shows its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

__all__ = ["last_json", "ok", "run_all"]


def last_json(stdout: str) -> dict | None:
    """The JSON object on the last line of ``stdout`` that holds one, if any."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{") and line.rstrip().endswith("}"):
            return json.loads(line)
    return None


def run_all(jobs: list[tuple[list[str], dict[str, str]]], timeout: float = 300.0) -> list[dict]:
    """Run each ``(argv, extra_env)`` as ``python ARGV`` concurrently.

    Returns:
        One dict per job, in order: ``code``, ``result`` (:func:`last_json` of stdout),
        ``stdout``, ``stderr``.
    """
    procs = []
    try:
        for argv, extra_env in jobs:
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **extra_env}
            procs.append(
                subprocess.Popen(
                    [sys.executable, *argv],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            )
        deadline = time.monotonic() + timeout
        done = []
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{proc.args[1:]} still running after {timeout:g}s (killed)")
            done.append(
                {"code": proc.returncode, "result": last_json(out), "stdout": out, "stderr": err}
            )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def ok(run: dict) -> dict:
    """The job's JSON result; fails the test with its output unless it exited 0 with one."""
    assert run["code"] == 0 and run["result"] is not None, (
        f"exit {run['code']}\n{run['stdout'][-2000:]}\n{run['stderr'][-4000:]}"
    )
    return run["result"]
