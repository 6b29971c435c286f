"""Run anywhere: the learner and ``modelzoo train`` under tf.distribute strategies.

In-process tests cover what needs no second device: building in scope, static-shape
batches and padded predictions on a TPU-shaped choice (a :class:`StrategyChoice` whose
kind is ``"tpu"`` over the CPU: the TPU code paths run, only the hardware is missing),
lost peers becoming :class:`StrategyError`, and the CLI's fast failures. Two logical
CPUs (``MODELZOO_CPU_DEVICES=2``) and multi-worker clusters need fresh interpreters:
those run ``tests/_workers.py`` or ``python -m modelzoo`` with a timeout and are
SIGKILLed in a ``finally``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import _workers
import numpy as np
import pytest
from _procs import ok, run_all

from modelzoo import config
from modelzoo.distribute import replicas, strategies
from modelzoo.errors import StrategyError, UsageError

WORKERS = Path(_workers.__file__)
DIGITS = _workers.DIGITS
CUT = _workers.CUT


@pytest.fixture(autouse=True)
def _no_cpu_split(monkeypatch):
    monkeypatch.delenv("MODELZOO_CPU_DEVICES", raising=False)


def _worker_env(ports: list[int], index: int, home: Path) -> dict[str, str]:
    return {"TF_CONFIG": _workers.tf_config(ports, index), "MODELZOO_HOME": str(home)}


def _pretend(kind: str):
    """A choice of ``kind`` over TensorFlow's default strategy: the code paths for that
    kind run on this CPU, up to the hardware they would need."""
    import tensorflow as tf

    return strategies.StrategyChoice(
        strategy=tf.distribute.get_strategy(),
        spec=kind,
        kind=kind,
        devices=("/cpu:0",),
        replicas=1,
        reason=f"test: {kind}-shaped choice on the CPU",
    )


@pytest.fixture(scope="module")
def tiny_base():
    import tf_keras as keras

    keras.utils.set_random_seed(1)
    return keras.applications.MobileNet(
        alpha=0.25, input_shape=(32, 32, 3), include_top=False, weights=None
    )


def _images(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 3, n)
    x[y == 1] *= 0.3
    return x, y


# ----------------------------------------------------------------------------- settings


def test_cpu_devices_setting(monkeypatch):
    assert config.cpu_devices() is None
    monkeypatch.setenv("MODELZOO_CPU_DEVICES", " 2 ")
    assert config.cpu_devices() == 2
    assert config.cpu_devices(4) == 4
    for bad in ("two", "0", "-1", "65", "1.5"):
        monkeypatch.setenv("MODELZOO_CPU_DEVICES", bad)
        with pytest.raises(UsageError) as info:
            config.cpu_devices()
        assert repr(bad) in str(info.value) and "from 1 to 64" in str(info.value)
    with pytest.raises(UsageError, match="Received: 0"):
        config.cpu_devices(0)


@pytest.mark.parametrize(
    ("read", "name", "default"),
    [
        (config.register_timeout, "MODELZOO_REGISTER_TIMEOUT", 120.0),
        (config.tpu_timeout, "MODELZOO_TPU_TIMEOUT", 10.0),
    ],
)
def test_register_and_tpu_timeout_settings(monkeypatch, read, name, default):
    monkeypatch.delenv(name, raising=False)
    assert read() == default
    monkeypatch.setenv(name, " 2.5 ")
    assert read() == 2.5
    assert read(7) == 7.0  # the argument wins
    for bad in ("soon", "0", "-3", "nan", "inf"):
        monkeypatch.setenv(name, bad)
        with pytest.raises(UsageError) as info:
            read()
        message = str(info.value)
        assert message.startswith(f"{name} must be a positive number of seconds")
        assert repr(bad) in message and f"default {default:g}s" in message
    monkeypatch.delenv(name)
    with pytest.raises(UsageError, match="Received: 0"):
        read(0)


@pytest.mark.tf
def test_strategies_read_the_timeout_settings(monkeypatch):
    monkeypatch.setenv("MODELZOO_REGISTER_TIMEOUT", "later")
    with pytest.raises(UsageError, match="MODELZOO_REGISTER_TIMEOUT must be a positive"):
        strategies.choose_strategy("cpu")
    assert strategies.choose_strategy("cpu", register_timeout=5).kind == "cpu"
    monkeypatch.delenv("MODELZOO_REGISTER_TIMEOUT")
    monkeypatch.setenv("MODELZOO_TPU_TIMEOUT", "-1")
    with pytest.raises(UsageError, match="MODELZOO_TPU_TIMEOUT must be a positive"):
        strategies.choose_strategy("cpu")


def test_cluster_helpers_import_no_tensorflow():
    # Reading TF_CONFIG and choosing where the chief saves must stay cheap: no TensorFlow.
    code = "import sys, modelzoo.distribute.cluster; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"


@pytest.mark.tf
def test_cpu_split_after_the_runtime_started_warns_and_mirrored_fails(monkeypatch, caplog):
    import tensorflow as tf

    _ = tf.constant(1.0) + 1.0  # the runtime is running from here on
    monkeypatch.setenv("MODELZOO_CPU_DEVICES", "2")
    with caplog.at_level(logging.WARNING, logger="modelzoo"):
        assert strategies.choose_strategy("cpu").kind == "cpu"
    assert any(
        "MODELZOO_CPU_DEVICES=2 has no effect" in r.getMessage()
        and "choose the strategy first" in r.getMessage()
        for r in caplog.records
    )
    with pytest.raises(StrategyError, match="two or more logical CPU devices"):
        strategies.choose_strategy("mirrored")


# ----------------------------------------------------------------------------- building in scope


@pytest.mark.tf
def test_in_scope_rebuilds_a_model_made_outside_the_strategy(tiny_base):
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert replicas.in_scope(tiny_base) is tiny_base  # the default strategy owns it
    try:
        tiny_base.get_layer("conv1").trainable = False
        copy = replicas.in_scope(tiny_base, strategy)
    finally:
        tiny_base.get_layer("conv1").trainable = True
    assert copy is not tiny_base
    assert all(strategy.extended.variable_created_in_scope(v) for v in copy.weights)
    assert [layer.name for layer in copy.layers] == [layer.name for layer in tiny_base.layers]
    assert not copy.get_layer("conv1").trainable and copy.get_layer("conv_pw_13").trainable
    for a, b in zip(copy.get_weights(), tiny_base.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert replicas.in_scope(copy, strategy) is copy


@pytest.mark.tf
def test_in_scope_explains_a_model_it_cannot_rebuild():
    import tensorflow as tf
    import tf_keras as keras

    class Apply(keras.layers.Layer):  # a function argument: no config to rebuild it from
        def __init__(self, fn):
            super().__init__()
            self.fn = fn
            self.w = self.add_weight(name="w", shape=(), initializer="ones")

        def call(self, x):
            return self.fn(x * self.w)

    inputs = keras.Input((3,))
    model = keras.Model(inputs, Apply(tf.math.square)(inputs))
    with pytest.raises(UsageError) as info:
        replicas.in_scope(model, tf.distribute.MirroredStrategy(["/cpu:0"]))
    assert "built outside the MirroredStrategy scope" in str(info.value)
    assert "NotImplementedError: Layer Apply was created by passing" in str(info.value)
    assert "Build it inside `with strategy.scope():`" in str(info.value)


@pytest.mark.tf
def test_learner_builds_everything_inside_a_mirrored_scope(tiny_base):
    import tensorflow as tf

    from modelzoo import TransferLearner

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    learner = TransferLearner(tiny_base, CUT, num_classes=3, strategy=strategy)
    x, y = _images(24)
    learner.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    in_scope = strategy.extended.variable_created_in_scope
    assert all(in_scope(v) for v in learner.model.weights)
    assert all(in_scope(v) for v in learner.head_model.optimizer.variables)
    assert learner.choice.kind == "mirrored" and learner.last_fit["global_batch_size"] == 8


# ----------------------------------------------------------------------------- data


@pytest.mark.tf
def test_batch_dataset_gives_static_full_batches_on_a_tpu():
    x, y = _images(40)
    tpu = _pretend("tpu")
    dataset = replicas.batch_dataset((x, y), 16, tpu, shuffle=True)
    assert dataset.element_spec[0].shape.as_list() == [16, 32, 32, 3]
    assert [len(b) for b, _ in dataset.as_numpy_iterator()] == [16, 16]
    plain = replicas.batch_dataset((x, y), 16)
    assert plain.element_spec[0].shape.as_list() == [None, 32, 32, 3]
    assert [len(b) for b, _ in plain.as_numpy_iterator()] == [16, 16, 8]
    with pytest.raises(UsageError) as info:
        replicas.batch_dataset((x[:10], y[:10]), 16, tpu)
    assert "10 examples make no global batch of 16" in str(info.value)


@pytest.mark.tf
def test_batch_dataset_shards_by_data_and_shuffles_alike_on_every_worker():
    import tensorflow as tf

    x, y = np.arange(64, dtype="float32").reshape(32, 2), np.arange(32)
    worker = _pretend("multi-worker")
    first = replicas.batch_dataset((x, y), 8, worker, shuffle=True)
    policy = first.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA
    second = replicas.batch_dataset((x, y), 8, worker, shuffle=True)  # "another worker"
    order = [b.tolist() for _, b in first.as_numpy_iterator()]
    assert order == [b.tolist() for _, b in second.as_numpy_iterator()]
    assert sorted(sum(order, [])) == list(range(32)) and sum(order, []) != list(range(32))


@pytest.mark.tf
def test_the_fit_seed_sets_the_shuffle_order_under_multi_worker(tiny_base):
    """Issue 11.7: under multi-worker training the shuffle order came from a constant,
    whatever seed was asked for (``train --seed``)."""
    from modelzoo import TransferLearner

    x, y = _images(32)
    worker = _pretend("multi-worker")
    start = None
    trained = {}
    for run, seed in (("a", 1), ("b", 2), ("c", 1)):
        learner = TransferLearner(tiny_base, CUT, num_classes=3, strategy=worker)
        start = start or learner.model.get_weights()
        learner.model.set_weights(start)
        learner.fit(x, y, epochs=1, batch_size=4, verbose=0, seed=seed)
        assert learner.last_fit["shuffle_seed"] == seed
        trained[run] = learner.model.get_weights()[-1]
    np.testing.assert_array_equal(trained["a"], trained["c"])  # same seed, same order
    assert np.abs(trained["a"] - trained["b"]).max() > 1e-6  # another seed, another order


@pytest.mark.tf
def test_batch_dataset_rebatches_datasets_and_rejects_bad_input():
    import tensorflow as tf

    x, y = np.zeros((10, 4), "float32"), np.arange(10)
    examples = tf.data.Dataset.from_tensor_slices((x, y))
    sizes = [len(b) for b, _ in replicas.batch_dataset(examples, 4).as_numpy_iterator()]
    assert sizes == [4, 4, 2]
    batched = replicas.batch_dataset(examples.batch(3), 4, _pretend("tpu"), batched=True)
    assert [len(b) for b, _ in batched.as_numpy_iterator()] == [4, 4]
    for call, expected in [
        (lambda: replicas.batch_dataset(examples, 4, shuffle=True), "shuffle a tf.data"),
        (lambda: replicas.batch_dataset((x, y[:5]), 4), "Received lengths: [10, 5]"),
        (lambda: replicas.batch_dataset(x, 4), "Received: ndarray"),
        (lambda: replicas.batch_dataset((x, y), 0), "Received: 0"),
    ]:
        with pytest.raises(UsageError) as info:
            call()
        assert expected in str(info.value)


@pytest.mark.tf
def test_tpu_shaped_learner_uses_static_batches_and_steps_per_execution(tiny_base):
    import tensorflow as tf

    from modelzoo import TransferLearner

    x, y = _images(40)
    learner = TransferLearner(
        tiny_base, CUT, num_classes=3, strategy=_pretend("tpu"), feature_cache=False
    )
    learner.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert int(learner.model._steps_per_execution.numpy()) == 32
    assert learner.last_fit["static_batches"] and learner.last_fit["strategy"] == "tpu"
    # A prediction pads its last batch to 16 and returns exactly the 5 rows asked for.
    np.testing.assert_allclose(
        learner.predict(x[:5], batch_size=16), learner.model.predict(x[:5], verbose=0), atol=1e-5
    )
    # Streamed (the cache is off) and re-batched to 16: its length is unknown, so Keras
    # cannot run 32 steps per call; one step per call still trains.
    images = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
    assert len(learner.fit(images, epochs=1, batch_size=16, verbose=0)["loss"]) == 1
    assert int(learner.model._steps_per_execution.numpy()) == 1
    assert learner.last_fit["examples"] is None  # a batched dataset is not counted
    unbatched = tf.data.Dataset.from_tensor_slices((x, y))  # a known length: 32 again
    learner.fit(unbatched, epochs=1, batch_size=16, verbose=0)
    assert int(learner.model._steps_per_execution.numpy()) == 32
    assert learner.last_fit["examples"] == 40
    with pytest.raises(UsageError, match="On a TPU every batch must be full"):
        learner.fit(x[:8], y[:8], epochs=1, batch_size=16, verbose=0)


@pytest.mark.tf
@pytest.mark.parametrize("where", ["tpu-shaped", "cpu-asked"])
def test_steps_per_execution_stays_in_sync_across_fits(tiny_base, where):
    """Issue 11.6: a fit on data of unknown length (1 step per call) followed by a fit on
    arrays (16 steps per call) must still take every optimizer step of every epoch."""
    import tensorflow as tf

    from modelzoo import TransferLearner

    x, y = _images(32)
    if where == "tpu-shaped":  # the TPU plan over the CPU: 32 steps per call
        kwargs = {"strategy": _pretend("tpu")}
    else:  # the default CPU strategy, asked for several steps per call
        kwargs = {"strategy": "cpu", "steps_per_execution": 16}
    learner = TransferLearner(tiny_base, CUT, num_classes=3, feature_cache=False, **kwargs)
    unknown = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)  # re-batched: length unknown
    for array_batch, epochs in ((2, 2), (4, 1)):
        learner.fit(unknown, epochs=1, batch_size=8, verbose=0)
        iterations = learner.model.optimizer.iterations
        # (Keras counts one step more than the 4 batches for data of unknown length.)
        assert int(iterations.numpy()) >= 4
        before = int(iterations.numpy())
        learner.fit(x, y, epochs=epochs, batch_size=array_batch, verbose=0)
        assert int(iterations.numpy()) - before == epochs * 32 // array_batch


@pytest.mark.tf
def test_tpu_shaped_learner_with_the_feature_cache_pads_the_features(tiny_base):
    from modelzoo import TransferLearner

    x, y = _images(35)
    cached = TransferLearner(tiny_base, CUT, num_classes=3, strategy=_pretend("tpu"))
    cached.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert cached.last_fit["feature_cache"] == "miss"
    from modelzoo.models.features import FeatureCache

    (stored,) = FeatureCache().root.glob("*.npy")
    assert np.load(stored).shape[0] == 35  # padding never reaches the cache


# ----------------------------------------------------------------------------- lost peers


@pytest.mark.tf
def test_lost_worker_becomes_a_strategy_error():
    import tensorflow as tf

    lost = (
        "Collective ops is aborted by: The following tasks are unhealthy (stopped sending "
        "heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed."
    )
    failures = replicas.cluster_failures(_pretend("multi-worker"), action="Training")
    with pytest.raises(StrategyError) as info, failures:
        raise tf.errors.UnavailableError(None, None, lost)
    message = str(info.value)
    assert message.startswith("Training stopped on this process: /job:worker/replica:0/task:1")
    assert "(UnavailableError)" in message and "restart every worker" in message
    assert "BackupAndRestore" in message
    assert isinstance(info.value.__cause__, tf.errors.UnavailableError)
    failures = replicas.cluster_failures(_pretend("tpu"), action="Prediction")
    with pytest.raises(StrategyError, match="the TPU stopped responding"), failures:
        raise tf.errors.DeadlineExceededError(None, None, "deadline")


@pytest.mark.tf
@pytest.mark.parametrize("where", ["fit", "setup", "fit-start"])
def test_lost_worker_is_named_from_real_tensorflow_errors(monkeypatch, where):
    """Issue 11.7: TensorFlow's texts name this process's own device inside op names
    (``__wrapped__CollectiveBcastSend_device_/job:worker/replica:0/task:0/...``); only
    the lost task may be blamed. The texts were captured from real 2-worker runs."""
    import tensorflow as tf

    captured = json.loads((Path(__file__).parents[1] / "data" / "tf_peer_errors.json").read_text())
    (case,) = [c for c in captured["errors"] if c["where"] == where]
    assert captured["survivor"] == "worker:0"
    cluster_of_two = _workers.tf_config(_workers.free_ports(2), 0)
    monkeypatch.setenv("TF_CONFIG", cluster_of_two)  # this process is worker 0
    error_class = getattr(tf.errors, case["type"])
    failures = replicas.cluster_failures(_pretend("multi-worker"), action="Training")
    with pytest.raises(StrategyError) as info, failures:
        raise error_class(None, None, case["message"])
    message = str(info.value)
    lost = captured["lost"]
    assert message.startswith(f"Training stopped on worker:0: {lost} stopped responding"), message
    assert "task:0" not in message and "\n" not in message


@pytest.mark.tf
def test_other_errors_pass_through_cluster_failures():
    import tensorflow as tf

    # One machine: nothing to blame.
    with pytest.raises(tf.errors.UnavailableError), replicas.cluster_failures(_pretend("cpu")):
        raise tf.errors.UnavailableError(None, None, "x")
    # A bug, not a lost peer.
    failures = replicas.cluster_failures(_pretend("multi-worker"))
    with pytest.raises(tf.errors.InvalidArgumentError), failures:
        raise tf.errors.InvalidArgumentError(None, None, "bad shape")
    assert replicas.all_workers_agree(True) and not replicas.all_workers_agree(False)


# ----------------------------------------------------------------------------- CLI, in process


@pytest.mark.tf
@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("gpu", "Strategy 'gpu' asks for GPU 0, but TensorFlow sees 0 GPUs"),
        ("tpu", "asks for a TPU, but none is configured"),
        ("multi-worker", "needs the TF_CONFIG environment variable"),
        ("bogus", "Unknown strategy spec 'bogus'"),
        ("--register-timeout 0", "register_timeout must be a positive number of seconds"),
        ("--tpu-timeout -2", "tpu_timeout must be a positive number of seconds"),
    ],
)
def test_train_with_missing_hardware_fails_in_one_line_before_reading_data(
    tmp_path, strategy, expected
):
    from typer.testing import CliRunner

    from modelzoo.cli import app

    data = tmp_path / "no-images"  # class folders without images: reading them would fail
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
    extra = strategy.split() if strategy.startswith("--") else ["--strategy", strategy]
    res = CliRunner().invoke(app, ["train", DIGITS, "--data", str(data), *extra])
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert "Traceback" not in res.output
    assert not (tmp_path / "model.keras").exists()


@pytest.mark.tf
def test_doctor_json_shows_devices_and_the_auto_choice(monkeypatch):
    from typer.testing import CliRunner

    from modelzoo.cli import app

    res = CliRunner().invoke(app, ["doctor", "--json"])
    assert res.exit_code == 0, res.output
    devices = json.loads(res.stdout)["devices"]
    assert devices["physical"]["CPU"] and devices["logical"]["CPU"]
    assert devices["auto"]["kind"] == "cpu" and devices["auto"]["devices"] == ["/cpu:0"]
    assert "0 GPUs found" in devices["auto"]["reason"]
    assert devices["cpu_devices_env"] is None
    cluster_of_two = {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}
    tf_config = {"cluster": cluster_of_two, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    text = CliRunner().invoke(app, ["doctor"]).stdout
    assert "TF_CONFIG     this is worker:1 of 2 workers" in text
    assert "strategy      auto -> multi-worker: auto:" in text
    assert "MultiWorkerMirroredStrategy" in text


# ----------------------------------------------------------------------------- subprocesses


@pytest.mark.tf
def test_learner_under_mirrored_matches_the_default_strategy(tmp_path):
    env = {"MODELZOO_CPU_DEVICES": "2", "MODELZOO_HOME": str(tmp_path)}
    (run,) = run_all([([str(WORKERS), "learner-mirrored"], env)])
    result = ok(run)
    assert result["kind"] == "mirrored" and result["replicas"] == 2
    assert result["devices"] == ["/cpu:0", "/cpu:1"]
    assert result["base_rebuilt"]  # the base was built outside the scope, then rebuilt in it
    for part in ("cache", "no_cache"):
        mirrored, default = result[part]["mirrored"], result[part]["default"]
        assert mirrored["all_in_scope"] and default["all_in_scope"]
        assert mirrored["fit"]["replicas"] == 2 and default["fit"]["replicas"] == 1
        assert mirrored["fit"]["global_batch_size"] == default["fit"]["global_batch_size"] == 16
        losses = mirrored["loss"]
        assert losses[-1] < 0.8 * losses[0], losses  # it learns
        assert default["loss"] == pytest.approx(losses, rel=1e-4)
        assert result[part]["max_prediction_gap"] < 1e-4
    cache = result["cache"]
    assert cache["mirrored"]["fit"]["feature_cache"] == "miss"  # computed under mirrored...
    assert cache["mirrored"]["second_cache"] == "hit"
    assert cache["default"]["fit"]["feature_cache"] == "hit"  # ...and reused by the default
    assert result["no_cache"]["mirrored"]["fit"]["feature_cache"] == "off"


@pytest.mark.tf
def test_train_command_under_mirrored_over_two_cpus(tmp_path, image_folder):
    out = tmp_path / "out" / "digits56.keras"
    argv = ["-m", "modelzoo", "train", DIGITS, "--cut", CUT, "--data", str(image_folder)]
    argv += ["--epochs", "2", "--batch-size", "4", "--val-split", "0.25", "--out", str(out)]
    argv += ["--strategy", "mirrored"]
    (run,) = run_all([(argv, {"MODELZOO_CPU_DEVICES": "2", "MODELZOO_HOME": str(tmp_path)})])
    assert run["code"] == 0, run["stdout"][-2000:] + run["stderr"][-4000:]
    stdout = run["stdout"]
    assert "strategy mirrored: 2 replica(s) on /cpu:0, /cpu:1" in stdout
    assert "global batch 8 = 4 per replica x 2 replica(s)" in stdout
    assert "final: loss" in stdout and f"saved {out}" in stdout
    assert out.exists() and (out.parent / "digits56.labels.json").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, "digits56.labels.json"]


@pytest.mark.tf
def test_doctor_json_in_a_process_with_a_cpu_split(tmp_path):
    env = {"MODELZOO_CPU_DEVICES": "2", "MODELZOO_HOME": str(tmp_path)}
    (run,) = run_all([(["-m", "modelzoo", "doctor", "--json"], env)])
    assert run["code"] == 0, run["stderr"][-4000:]
    devices = json.loads(run["stdout"])["devices"]  # indented JSON: the whole of stdout
    assert devices["cpu_devices_env"] == 2
    assert len(devices["physical"]["CPU"]) == 1 and len(devices["logical"]["CPU"]) == 2
    # auto never mirrors CPUs by itself: the split is a testing aid, not a speed-up
    assert devices["auto"]["kind"] == "cpu" and "0 GPUs found" in devices["auto"]["reason"]


@pytest.mark.tf
@pytest.mark.slow
def test_two_worker_learner_trains_and_only_the_chief_saves(tmp_path):
    ports = _workers.free_ports(2)
    out = tmp_path / "saved" / "model.keras"
    out.parent.mkdir()
    argv = [str(WORKERS), "learner-worker", str(out), "90"]
    runs = run_all([(argv, _worker_env(ports, i, tmp_path / f"home{i}")) for i in (0, 1)])
    chief, worker = (ok(run) for run in runs)
    assert chief["kind"] == worker["kind"] == "multi-worker"
    assert chief["replicas"] == worker["replicas"] == 2
    assert chief["global_batch"] == worker["global_batch"] == 2 * _workers.LEARNER_PER_REPLICA
    assert (chief["chief"], chief["chief_from_env"]) == (True, True)
    assert (worker["chief"], worker["chief_from_env"]) == (False, False)
    assert chief["loss"][-1] < 0.9 * chief["loss"][0], chief["loss"]
    assert chief["loss"] == pytest.approx(worker["loss"])  # one model, kept in sync
    # The feature cache: only the chief wrote it; on the second fit the chief had the
    # features but the worker did not, so both voted to compute them again.
    assert (chief["features_written"], worker["features_written"]) == (1, 0)
    assert chief["first_cache"] == worker["first_cache"] == "miss"
    assert chief["second_cache"] == worker["second_cache"] == "miss"
    assert chief["agree_true"] and worker["agree_true"]
    assert not chief["agree_chief_only"] and not worker["agree_chief_only"]
    # Saving: both return the real path, only the chief's copy exists, no temp is left.
    assert chief["saved"] == worker["saved"] == str(out)
    assert chief["temp_left"] == worker["temp_left"] == []
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.keras", "model.labels.json"]
    assert json.loads((out.parent / "model.labels.json").read_text())["labels"][0] == "5"
    assert chief["same_again"] and worker["same_again"]  # one strategy per process
    # The saved model loads with plain tf_keras in a fresh process without any strategy.
    (plain,) = run_all([([str(WORKERS), "load-and-predict", str(out)], {})])
    plain = ok(plain)
    assert plain["strategy"] == "_DefaultDistributionStrategy"
    np.testing.assert_allclose(plain["predictions"], chief["predictions"], atol=1e-5)
    np.testing.assert_allclose(worker["predictions"], chief["predictions"], atol=1e-5)


@pytest.mark.tf
@pytest.mark.slow
def test_worker_dying_mid_fit_stops_the_chief_with_a_strategy_error(tmp_path):
    ports = _workers.free_ports(2)
    out = tmp_path / "saved" / "model.keras"
    argv = [str(WORKERS), "learner-dies", str(out), "90"]
    chief, worker = run_all([(argv, _worker_env(ports, i, tmp_path / f"home{i}")) for i in (0, 1)])
    assert worker["code"] == 3  # it died abruptly at the start of its second epoch
    result = ok(chief)
    assert result["chief"] and result["error"] == "StrategyError", result
    message = result["message"]
    assert message.startswith("Training stopped on worker:0: /job:worker/replica:0/task:1")
    assert "stopped responding" in message and "restart every worker" in message
    assert "Traceback" not in message and "\n" not in message
    assert not out.exists()


@pytest.mark.tf
@pytest.mark.slow
def test_peer_lost_during_set_up_or_at_the_start_of_fit_is_one_line_naming_it(tmp_path):
    # Issue 11.7: worker 1 joins, then dies before the learner is built ("setup": the
    # broadcast of initial values fails) or before the first fit ("fit-start": reading
    # the mirrored weights fails). Both escaped as raw UnavailableErrors naming worker 0.
    jobs = []
    for when in ("setup", "fit-start"):
        ports = _workers.free_ports(2)
        argv = [str(WORKERS), "peer-dies", when, "90"]
        jobs += [(argv, _worker_env(ports, i, tmp_path / f"{when}{i}")) for i in (0, 1)]
    setup, setup_peer, fit, fit_peer = run_all(jobs)
    assert setup_peer["code"] == fit_peer["code"] == 3
    for run, stage, action in ((setup, "setup", "Building the model"), (fit, "fit", "Training")):
        result = ok(run)
        assert result["stage"] == stage and result["ours"], result
        assert result["error"] == "StrategyError", result
        message = result["message"]
        lost = "/job:worker/replica:0/task:1 stopped responding"
        assert message.startswith(f"{action} stopped on worker:0: {lost}"), message
        assert "task:0" not in message and "\n" not in message
        assert "restart every worker" in message
