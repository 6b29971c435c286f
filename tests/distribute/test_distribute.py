"""Tests for modelzoo.distribute: choosing strategies, clusters,
worker saving.

Anything that needs logical devices or a cluster runs in a fresh interpreter
(tests/_workers.py) with a timeout and is SIGKILLed in a ``finally``: TensorFlow ignores
SIGTERM in multi-worker processes, and a hang must end the test, not the run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import _workers
import pytest
from _procs import ok, run_all

from modelzoo.distribute import cluster, replicas, strategies
from modelzoo.errors import StrategyError, UsageError

WORKERS = Path(_workers.__file__)
# Generous: on a busy 2-core machine importing TensorFlow alone can take a minute.
SUBPROCESS_TIMEOUT = 300.0


def _closed_port() -> int:
    return _workers.free_ports(1)[0]


def _run(jobs: list[tuple[list[str], dict[str, str]]], timeout: float = SUBPROCESS_TIMEOUT):
    """Run ``tests/_workers.py ARGS`` once per job, concurrently; return their JSON results."""
    return [ok(r) for r in run_all([([str(WORKERS), *a], env) for a, env in jobs], timeout)]


# ----------------------------------------------------------------------------- TF_CONFIG

GOOD = {
    "cluster": {"chief": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222", "10.0.0.3:2222"]},
    "task": {"type": "worker", "index": 1},
}


def test_parse_tf_config_reads_cluster_and_task():
    config = cluster.parse_tf_config(json.dumps(GOOD))
    assert config.num_workers == 3
    assert (config.task_type, config.task_index) == ("worker", 1)
    assert config.address == "10.0.0.3:2222"
    assert config.leader == "/job:chief/replica:0/task:0"
    assert not config.is_chief
    assert cluster.parse_tf_config({**GOOD, "task": {"type": "chief", "index": 0}}).is_chief


def test_parse_tf_config_without_chief_makes_worker_0_chief_and_leader():
    jobs = {"worker": ["a:1", "b:2"]}
    first = cluster.parse_tf_config({"cluster": jobs, "task": {"type": "worker", "index": 0}})
    second = cluster.parse_tf_config({"cluster": jobs, "task": {"type": "worker", "index": 1}})
    assert first.is_chief and not second.is_chief
    assert first.leader == "/job:worker/replica:0/task:0"


def test_parse_tf_config_reads_environment(monkeypatch):
    assert cluster.parse_tf_config() is None
    monkeypatch.setenv("TF_CONFIG", "  ")
    assert cluster.parse_tf_config() is None
    monkeypatch.setenv("TF_CONFIG", json.dumps(GOOD))
    assert cluster.parse_tf_config().num_workers == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({**GOOD, "clusterr": {}}, "unknown keys ['clusterr']"),
        ({**GOOD, "rpc_layer": "grpc+verbs"}, "rpc_layer"),
        ({"task": GOOD["task"]}, '"cluster" object'),
        ({**GOOD, "cluster": {"worker": ["a:1"], "ps": ["b:2"]}}, "parameter-server"),
        ({**GOOD, "cluster": {"worker": []}}, 'cluster["worker"] must be a list'),
        ({**GOOD, "cluster": {"worker": "a:1"}}, 'cluster["worker"] must be a list'),
        ({**GOOD, "cluster": {"chief": ["a:1", "b:2"], "worker": ["c:3"]}}, "list of one"),
        ({**GOOD, "cluster": {"worker": ["a:1", "hostonly"]}}, "'hostonly'"),
        ({**GOOD, "cluster": {"worker": ["a:1", "b:99999"]}}, "'b:99999'"),
        ({**GOOD, "cluster": {"worker": ["a:1", 7]}}, "Received: 7"),
        ({**GOOD, "cluster": {"worker": ["a:1", "a:1"]}}, "twice"),
        ({"cluster": GOOD["cluster"]}, '"task"'),
        ({**GOOD, "task": {"type": "ps", "index": 0}}, "'ps'"),
        ({**GOOD, "task": {"type": "worker", "index": 2}}, "from 0 to 1"),
        ({**GOOD, "task": {"type": "worker", "index": "0"}}, "Received: '0'"),
        ({**GOOD, "task": {"type": "worker", "index": True}}, "Received: True"),
        ({**GOOD, "task": {"type": "worker"}}, "Received: None"),
    ],
)
def test_parse_tf_config_errors_say_what_is_wrong(value, expected):
    with pytest.raises(StrategyError) as info:
        cluster.parse_tf_config(value if isinstance(value, str) else json.dumps(value))
    message = str(info.value)
    assert message.startswith("TF_CONFIG ")
    assert expected in message
    assert '"task": {"type": "worker", "index": 0}' in message  # shows a valid example


# ----------------------------------------------------------------------------- chief saving


def test_is_chief_outside_a_cluster_and_from_config(monkeypatch):
    assert cluster.is_chief() is True
    worker1 = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    assert cluster.is_chief(json.dumps(worker1)) is False
    assert cluster.is_chief(worker1) is False
    assert cluster.is_chief(cluster.parse_tf_config(GOOD)) is False
    monkeypatch.setenv("TF_CONFIG", json.dumps({**worker1, "task": {"type": "worker", "index": 0}}))
    assert cluster.is_chief() is True


def test_non_chief_saves_to_a_worker_folder_that_is_removed(tmp_path, monkeypatch):
    worker1 = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(worker1))
    real = tmp_path / "out" / "model.keras"
    target = cluster.worker_temp_dir(real)
    assert target != real and target.name == "model.keras"
    assert target.parent.is_dir() and target.parent.parent == real.parent
    target.write_bytes(b"weights")
    cluster.remove_worker_temp(real)
    assert not target.parent.exists()
    assert sorted(p.name for p in real.parent.iterdir()) == []
    with cluster.saving_path(real) as target:
        target.write_bytes(b"weights")
    assert not target.exists() and not real.exists()


def test_chief_saves_to_the_real_path_and_keeps_it(tmp_path, monkeypatch):
    chief = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(chief))
    real = tmp_path / "model.keras"
    assert cluster.worker_temp_dir(real) == real
    with cluster.saving_path(real) as target:
        target.write_bytes(b"weights")
    assert real.read_bytes() == b"weights"
    cluster.remove_worker_temp(real)  # never deletes the chief's output
    assert real.exists()


def test_different_workers_get_different_folders(tmp_path):
    def config(index):
        jobs = {"worker": ["a:1", "b:2", "c:3"]}
        return {"cluster": jobs, "task": {"type": "worker", "index": index}}

    first = cluster.worker_temp_dir(tmp_path / "m", config(1))
    second = cluster.worker_temp_dir(tmp_path / "m", config(2))
    assert first != second


# ----------------------------------------------------------------------------- specs (in process)


@pytest.mark.tf
def test_auto_on_this_machine_is_the_default_cpu_strategy(caplog):
    choice = strategies.choose_strategy("auto")
    assert choice.kind == "cpu" and choice.replicas == 1 and choice.devices == ("/cpu:0",)
    assert choice.spec == "auto"
    assert "0 GPUs" in choice.reason and "TF_CONFIG absent" in choice.reason
    assert "TPU_NAME unset" in choice.reason
    with caplog.at_level(logging.INFO, logger="modelzoo"):
        strategy = strategies.make_strategy()
    assert strategy is choice.strategy
    assert any("0 GPUs" in record.getMessage() for record in caplog.records)


@pytest.mark.tf
def test_cpu_default_and_none_on_a_cpu_machine():
    tf = pytest.importorskip("tensorflow")
    cpu = strategies.choose_strategy("cpu")
    none = strategies.choose_strategy(None)
    assert cpu.kind == none.kind == "cpu"
    assert cpu.strategy is none.strategy is tf.distribute.get_strategy()
    assert none.spec == "default"
    assert strategies.choose_strategy("default").strategy is none.strategy


@pytest.mark.tf
def test_ready_made_strategies_pass_through():
    tf = pytest.importorskip("tensorflow")
    one = tf.distribute.OneDeviceStrategy("/cpu:0")
    assert strategies.make_strategy(one) is one
    choice = strategies.choose_strategy(one)
    assert choice.kind == "cpu" and choice.replicas == 1 and "ready-made" in choice.reason
    assert strategies.choose_strategy(choice) is choice
    assert strategies.make_strategy(choice) is one
    mirrored = strategies.choose_strategy(tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert mirrored.kind == "mirrored"


@pytest.mark.tf
def test_auto_with_one_worker_tf_config_stays_local(monkeypatch):
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}),
    )
    choice = strategies.choose_strategy("auto")
    assert choice.kind == "cpu" and "TF_CONFIG names 1 worker" in choice.reason


@pytest.mark.tf
def test_auto_with_a_broken_tf_config_fails(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{oops")
    with pytest.raises(StrategyError, match="not valid JSON"):
        strategies.choose_strategy("auto")


@pytest.mark.tf
def test_auto_with_tpu_name_pointing_nowhere_fails_fast(monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("TPU_NAME", f"grpc://127.0.0.1:{port}")
    with pytest.raises(StrategyError, match=f"nothing answers at 127.0.0.1:{port}") as info:
        strategies.make_strategy("auto", tpu_timeout=2)
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.tf
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("bogus", "Valid specs: auto, cpu, gpu"),
        ("gpus", "Did you mean 'gpu'?"),
        ("cpu:1", "bad ':' part"),
        ("auto:x", "bad ':' part"),
        ("tpu:", "bad ':' part"),
        ("gpu:x", "GPU index"),
        ("mirrored:/cpu:0,/cpu:0", "twice"),
        ("mirrored:/cpu:0,/gpu:0", "mixes device types"),
        ("mirrored:/job:worker/task:1/cpu:0", "not a local device"),
        ("mirrored:???", "not a device"),
    ],
)
def test_bad_specs_are_usage_errors(spec, expected):
    with pytest.raises(UsageError) as info:
        strategies.make_strategy(spec)
    assert expected in str(info.value)
    assert repr(spec) in str(info.value)  # says what it received


@pytest.mark.tf
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"spec": 3}, "Received: 3 (int)"),
        ({"tpu_timeout": 0}, "tpu_timeout must be a positive"),
        ({"register_timeout": -1}, "register_timeout must be a positive"),
        ({"register_timeout": True}, "register_timeout must be a positive"),
    ],
)
def test_bad_arguments_are_usage_errors(kwargs, expected):
    with pytest.raises(UsageError) as info:
        strategies.make_strategy(**kwargs)
    assert expected in str(info.value)


# ----------------------------------------------------------------------------- data helpers


@pytest.mark.tf
def test_dataset_helpers_under_the_default_strategy():
    tf = pytest.importorskip("tensorflow")
    assert replicas.global_batch_size(32) == 32
    assert replicas.global_batch_size(8, strategies.choose_strategy("cpu")) == 8
    assert replicas.steps_per_execution_for() == 1
    dataset = tf.data.Dataset.range(10).batch(4)
    assert replicas.prepare_dataset(dataset) is dataset
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert replicas.prepare_dataset(dataset, mirrored) is dataset
    assert replicas.steps_per_execution_for(mirrored) == 1


@pytest.mark.tf
@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: replicas.global_batch_size(0), "per_replica must be a positive integer"),
        (lambda: replicas.global_batch_size(2.5), "Received: 2.5"),
        (lambda: replicas.global_batch_size(8, "auto"), "Build one with make_strategy()"),
        (lambda: replicas.prepare_dataset([1, 2, 3]), "needs a tf.data.Dataset"),
        (lambda: replicas.steps_per_execution_for(object()), "Expected a tf.distribute"),
    ],
)
def test_dataset_helpers_reject_bad_arguments(call, expected):
    with pytest.raises(UsageError) as info:
        call()
    assert expected in str(info.value)


@pytest.mark.tf
def test_describe_devices_reports_devices_and_the_auto_plan():
    info = strategies.describe_devices()
    assert set(info) == {
        "tensorflow",
        "tf_keras",
        "physical",
        "logical",
        "tf_config",
        "tpu_name",
        "tpu_device_files",
        "cpu_devices_env",
        "auto",
    }
    assert info["tensorflow"].startswith("2.") and info["tf_keras"].startswith("2.")
    assert len(info["physical"]["CPU"]) >= 1 and info["logical"]["CPU"]
    assert info["tf_config"] is None and info["tpu_name"] is None
    assert info["cpu_devices_env"] is None
    assert info["auto"]["kind"] == "cpu" and "0 GPUs" in info["auto"]["reason"]
    json.dumps(info)  # the doctor command prints it as JSON


@pytest.mark.tf
def test_describe_devices_plans_without_building(monkeypatch):
    # A 2-worker cluster whose peers do not exist: building would wait; planning must not.
    monkeypatch.setenv("TF_CONFIG", json.dumps(GOOD))
    info = strategies.describe_devices()
    assert info["tf_config"] == {"task": "worker:1", "workers": 3, "error": None}
    assert info["auto"]["kind"] == "multi-worker"
    monkeypatch.setenv("TF_CONFIG", "[]")
    info = strategies.describe_devices()
    assert "must be a JSON object" in info["tf_config"]["error"]
    assert "must be a JSON object" in info["auto"]["error"]
    monkeypatch.setenv("TF_CONFIG", json.dumps(GOOD))
    monkeypatch.setenv("TPU_NAME", "grpc://127.0.0.1:1")
    info = strategies.describe_devices()
    assert info["tpu_name"] == "grpc://127.0.0.1:1" and info["auto"]["kind"] == "tpu"


# ----------------------------------------------------------------------------- subprocesses

MISSING = [
    "gpu",
    "gpu:1",
    "tpu",
    "mirrored",
    "mirrored:/gpu:0,/gpu:1",
    "mirrored:/cpu:0,/cpu:1",
    "multi-worker",
    "tpu:no-such-tpu-here",
    "tpu:local",  # last: it starts the TensorFlow runtime
]


@pytest.fixture(scope="module")
def missing_hardware():
    """Ask a fresh interpreter for every kind of hardware this machine lacks."""
    closed = f"tpu:grpc://127.0.0.1:{_closed_port()}"
    (results,) = _run([(["specs", closed, *MISSING], {})])
    results["tpu:grpc://closed"] = results.pop(closed)
    return results


@pytest.mark.tf
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("gpu", "asks for GPU 0, but TensorFlow sees 0 GPUs, 1 CPU"),
        ("gpu:1", "asks for GPU 1, but TensorFlow sees 0 GPUs, 1 CPU"),
        ("tpu", "TPU_NAME is unset"),
        ("mirrored", "needs GPUs or two or more logical CPU devices"),
        ("mirrored:/gpu:0,/gpu:1", "asks for /gpu:0, /gpu:1"),
        ("mirrored:/cpu:0,/cpu:1", "asks for /cpu:1"),
        ("multi-worker", "needs the TF_CONFIG environment variable"),
        ("tpu:no-such-tpu-here", "Could not start TPU 'no-such-tpu-here'"),
        ("tpu:grpc://closed", "nothing answers at 127.0.0.1:"),
        ("tpu:local", "Could not start the local TPU: NotFoundError"),
    ],
)
def test_missing_hardware_fails_fast_with_strategy_error(missing_hardware, spec, expected):
    result = missing_hardware[spec]
    assert result.get("error") == "StrategyError", result
    assert expected in result["message"]
    assert "Traceback" not in result["message"]


@pytest.mark.tf
def test_mirrored_over_two_logical_cpus_matches_the_default_strategy():
    (result,) = _run([(["mirrored"], {})])
    assert result["kind"] == "mirrored" and result["replicas"] == 2
    assert result["devices"] == ["/cpu:0", "/cpu:1"] and result["explicit_replicas"] == 2
    assert result["global_batch"] == 2 * _workers.PER_REPLICA
    losses = result["mirrored_loss"]
    assert losses[-1] < 0.5 * losses[0]  # it learns
    assert result["default_loss"] == pytest.approx(losses, rel=1e-4)
    assert result["max_weight_gap"] < 1e-4
    assert result["describe_logical_cpus"] == 2


# The two-worker training run (a TransferLearner on each worker, chief-only saving, a
# reload in a plain process) lives in tests/distribute/test_scaling.py: one such run is enough.


@pytest.mark.tf
@pytest.mark.slow
def test_worker_whose_peer_never_starts_fails_with_strategy_error():
    # Lone workers of three 2-worker clusters, run at once: the leader waiting for its
    # peer, a worker whose leader is not there (both must give up after register_timeout),
    # and a worker that ran TensorFlow ops before asking (fails at once).
    ports = _workers.free_ports(6)
    leader, follower, late = _run(
        [
            (  # the timeout from the environment, not an argument
                ["spec", "multi-worker"],
                {"TF_CONFIG": _workers.tf_config(ports[:2], 0), "MODELZOO_REGISTER_TIMEOUT": "3"},
            ),
            (["spec", "auto", "3"], {"TF_CONFIG": _workers.tf_config(ports[2:4], 1)}),
            (["late", "multi-worker", "3"], {"TF_CONFIG": _workers.tf_config(ports[4:], 0)}),
        ]
    )
    for result in (leader, follower):
        assert result["error"] == "StrategyError", result
        assert "not all 2 workers joined within 3s" in result["message"]
        assert "DeadlineExceededError" in result["message"]
        assert "restart this process" in result["message"]
        assert "TensorFlow cannot join a cluster twice" in result["again"]
    assert "worker:0" in leader["message"] and "worker:1" in follower["message"]
    assert late["error"] == "StrategyError", late
    assert "TensorFlow was already running" in late["message"]
    assert "Build the strategy before any other TensorFlow work" in late["message"]


@pytest.fixture()
def silent_and_http_ports():
    """Two local TCP servers that accept connections: one never says a word, one speaks
    HTTP/1.1. Neither is a gRPC server."""
    import http.server
    import socket
    import threading

    silent = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(silent.accept()[0])
            except OSError:  # closed at teardown
                return

    threading.Thread(target=accept, daemon=True).start()
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        yield silent.getsockname()[1], web.server_port
    finally:
        web.shutdown()
        web.server_close()
        silent.close()
        for conn in accepted:
            conn.close()


@pytest.mark.tf
def test_tpu_address_that_is_not_grpc_fails_within_the_tpu_timeout(silent_and_http_ports):
    # Issue 11.7: a port that accepts TCP but does not speak gRPC made
    # experimental_connect_to_cluster wait forever. A real TensorFlow gRPC server (no TPU
    # behind it) is the negative control: it passes the check and fails at TPU start-up.
    import tensorflow as tf

    silent, web = silent_and_http_ports
    grpc_server = tf.distribute.Server.create_local_server()
    specs = {
        "silent": f"tpu:grpc://127.0.0.1:{silent}",
        "http": f"tpu:grpc://127.0.0.1:{web}",
        "grpc": f"tpu:{grpc_server.target}",
    }
    (results,) = _run([(["specs", *specs.values()], {"MODELZOO_TPU_TIMEOUT": "2"})], timeout=240)
    found = {name: results[spec] for name, spec in specs.items()}
    for name in ("silent", "http"):
        assert found[name].get("error") == "StrategyError", found
        assert "accepts connections but is not a gRPC server" in found[name]["message"]
        assert "MODELZOO_TPU_TIMEOUT" in found[name]["message"]
        assert found[name]["seconds"] < 60  # bounded: 2s per attempt, two attempts
    assert "said nothing within 2s" in found["silent"]["message"]
    assert "answered b'" in found["http"]["message"]
    assert found["grpc"].get("error") == "StrategyError", found
    assert "TPUs not found in the cluster" in found["grpc"]["message"]
    assert "not a gRPC server" not in found["grpc"]["message"]


@pytest.mark.tf
def test_train_tpu_timeout_flag_bounds_a_silent_tpu_address(silent_and_http_ports, tmp_path):
    from typer.testing import CliRunner

    from modelzoo.cli import app

    silent, _ = silent_and_http_ports
    data = tmp_path / "no-images"  # never read: the strategy fails first
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
    spec = f"tpu:grpc://127.0.0.1:{silent}"
    argv = ["train", "mobilenet_v1_0.25_32_digits", "--data", str(data), "--strategy", spec]
    res = CliRunner().invoke(app, [*argv, "--tpu-timeout", "1"])
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not a gRPC server (it said nothing within 1s)" in lines[0]
