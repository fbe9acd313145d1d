"""training.py: losses, strategies, gradient accumulation, checkpoints, input pipeline.

Tiny ALBERT (hidden 32, 2 layers, the real 21,128-token vocab) on TFRecords made from real
Chinese text. Two logical CPU devices must be configured before TensorFlow initialises, so the
mirrored-strategy comparison runs in a subprocess.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import checkpoints
import pretraining_data
import training
from errors import AlbertError
from tests import pretraining_fixtures as pf
from tests.conftest import REPO_ROOT, shared_data

L, P, BATCH = 32, 5, 16


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    directory = tmp_path_factory.mktemp("records")
    sentences = pf.read_sentences(shared_data("corpus_sample/news_zh_1.txt"))
    examples = pf.make_examples(
        sentences, shared_data("vocab.txt"), 192, L, P, token_boundary=True
    )  # Google's extra feature must be ignored
    files = pf.write_tfrecords([directory / "a.tfrecord", directory / "b.tfrecord"], examples)
    return files, pf.write_config(directory / "config.json")


def one_device():
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def first_batch(files):
    dataset = pf.dataset_fn_for(files, BATCH, L, P)(None)
    return next(iter(dataset))


def step_losses(trainer):
    return [loss for record in trainer.history for loss in record["step_losses"]]


def weights(trainer):
    return {n: v.numpy() for n, v in trainer.model.named_variables().items()}


def test_loss_fn_matches_modeling_losses_and_numpy_accuracy(records):
    files, config = records
    trainer = pf.build_trainer(one_device(), config, None, 10)
    batch = first_batch(files)
    loss_sums, metrics = trainer.loss_fn(batch, False)
    weights_fn = trainer.loss_weights_fn(batch)
    ours = sum(float(loss_sums[t]) / (float(weights_fn[t]) + 1e-5) for t in loss_sums)

    out = trainer.model(
        batch["input_ids"], batch["input_mask"], batch["segment_ids"], batch["masked_lm_positions"]
    )
    # NumPy oracle: the originals' weighted MLM mean (sum(w) + 1e-5) plus the mean SOP CE
    log_probs = out["masked_lm_log_probs"].numpy()
    ids, w = batch["masked_lm_ids"].numpy(), batch["masked_lm_weights"].numpy()
    picked = -np.take_along_axis(log_probs, ids[..., None], -1)[..., 0]
    mlm = (picked * w).sum() / (w.sum() + 1e-5)
    logits = out["sentence_order_logits"].numpy().astype(np.float64)
    sop_log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    labels = batch["next_sentence_labels"].numpy().reshape(-1)
    sop = -np.mean(sop_log_probs[np.arange(len(labels)), labels])
    np.testing.assert_allclose(ours, mlm + sop, rtol=1e-5)

    log_probs = out["masked_lm_log_probs"].numpy()
    w = batch["masked_lm_weights"].numpy()
    correct = (log_probs.argmax(-1) == batch["masked_lm_ids"].numpy()) * w
    total, count = (float(x) for x in metrics["masked_lm_accuracy"])
    assert count == w.sum() and total == correct.sum()


def test_loss_goes_down_on_real_corpus(tmp_path):
    sentences = pf.read_sentences(shared_data("corpus/misc_news_clue.txt"), limit=3000)
    examples = pf.make_examples(sentences, shared_data("vocab.txt"), 640, 64, 10, seed=3)
    files = pf.write_tfrecords([tmp_path / "train.tfrecord"], examples)
    config = pf.write_config(tmp_path / "config.json")
    trainer = pf.build_trainer(one_device(), config, str(tmp_path / "out"), 60, learning_rate=3e-3)
    trainer.train(
        pf.dataset_fn_for(files, 32, 64, 10),
        60,
        32,
        iterations_per_loop=20,
        save_checkpoints_steps=0,
    )
    losses = step_losses(trainer)
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < first - 2.0, (first, last)  # ln(21128)+ln 2 = 10.6 at the start
    # the loop wrote a JSON log and TensorBoard events for the curve
    log = [json.loads(line) for line in open(tmp_path / "out" / "train_log.jsonl")]
    assert [r["step"] for r in log] == [20, 40, 60]
    assert {
        "masked_lm_accuracy",
        "sentence_order_accuracy",
        "learning_rate",
        "examples_per_second",
    } <= set(log[0])
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "out"))


def test_checkpoints_names_pruning_atomic_state_and_exact_restore(records, tmp_path):
    files, config = records
    out = str(tmp_path / "out")
    trainer = pf.build_trainer(one_device(), config, out, 6, keep_checkpoint_max=2)
    trainer.train(
        pf.dataset_fn_for(files, BATCH, L, P),
        6,
        BATCH,
        iterations_per_loop=2,
        save_checkpoints_steps=2,
    )
    assert sorted(f for f in os.listdir(out) if f.endswith(".index")) == [
        "model.ckpt-4.index",
        "model.ckpt-6.index",
    ]  # model.ckpt-2 pruned
    stored = pf.read_tensors(os.path.join(out, "model.ckpt-6"))
    assert int(stored["global_step"]) == 6
    for name in trainer.model.named_variables():
        assert name in stored and f"{name}/adam_m" in stored and f"{name}/adam_v" in stored
    extra = [
        n
        for n in stored
        if not (
            n in trainer.model.named_variables()
            or n == "global_step"
            or n.endswith(("/adam_m", "/adam_v"))
        )
    ]
    # extra state stays out of the export tools' way (HF skips "global_step" names)
    assert extra and all(n.startswith("training_state/global_step/") for n in extra)

    # A later save that died half-way: files exist, but the state file never pointed at them.
    with open(os.path.join(out, "model.ckpt-8.index"), "wb") as f:
        f.write(b"\x00garbage")
    assert checkpoints.latest_checkpoint(out) == os.path.join(out, "model.ckpt-6")

    fresh = pf.build_trainer(one_device(), config, out, 6, seed=99)
    assert fresh.restore_or_initialize() == 6
    assert pf.max_abs_difference(weights(fresh), weights(trainer), weights(trainer)) == 0.0
    for name, slot in fresh.optimizer.named_slot_variables().items():
        np.testing.assert_array_equal(slot.numpy(), stored[name])
    assert int(fresh.optimizer.iterations.numpy()) == 6

    # A released-style checkpoint (ours, read by checkpoints.load_checkpoint) starts a new run.
    other = pf.build_trainer(one_device(), config, str(tmp_path / "new"), 6, seed=5)
    other.restore_or_initialize(os.path.join(out, "model.ckpt-6"))
    assert other.global_step == 0
    assert pf.max_abs_difference(weights(other), weights(trainer), weights(trainer)) == 0.0


def test_eval_results_file(records, tmp_path):
    files, config = records
    trainer = pf.build_trainer(one_device(), config, str(tmp_path), 2)
    eval_fn = pf.dataset_fn_for(files, 24, L, P, is_training=False)  # 192 = 8 batches
    results = trainer.evaluate(eval_fn, max_steps=100)
    assert set(results) == {
        "masked_lm_accuracy",
        "masked_lm_loss",
        "sentence_order_accuracy",
        "sentence_order_loss",
        "loss",
        "global_step",
    }
    assert results["loss"] == pytest.approx(
        results["masked_lm_loss"] + results["sentence_order_loss"]
    )
    assert abs(results["masked_lm_loss"] - np.log(21128)) < 0.5  # untrained: about uniform
    path = tmp_path / "eval_results.txt"
    training.write_eval_results(str(path), results)
    assert "masked_lm_accuracy = " in path.read_text()


def test_fp16_overflow_skips_the_step_and_halves_the_scale(records):
    files, config = records
    trainer = pf.build_trainer(
        one_device(), config, None, 1, precision="fp16", init_loss_scale=1e38
    )
    before = weights(trainer)
    trainer.train(pf.dataset_fn_for(files, BATCH, L, P), 1, BATCH, save_checkpoints_steps=0)
    assert float(trainer.loss_scale.numpy()) == pytest.approx(5e37)
    assert int(trainer.optimizer.iterations.numpy()) == 0
    assert pf.max_abs_difference(weights(trainer), before, before) == 0.0


def test_bf16_trains_close_to_fp32(records):
    files, config = records
    losses = {}
    for precision in ("fp32", "bf16"):
        trainer = pf.build_trainer(one_device(), config, None, 2, precision=precision)
        trainer.train(pf.dataset_fn_for(files, BATCH, L, P), 2, BATCH, save_checkpoints_steps=0)
        losses[precision] = step_losses(trainer)
    np.testing.assert_allclose(losses["bf16"], losses["fp32"], rtol=2e-2)


def test_schema_errors_name_the_flag(records, tmp_path):
    files, _ = records
    spec = pretraining_data.pretraining_feature_spec(L, 20)
    with pytest.raises(AlbertError, match=r"masked_lm_positions.*length 5.*--max_predictions"):
        pretraining_data.check_tfrecord_schema(
            files[0], spec, {"masked_lm_positions": "max_predictions_per_seq"}
        )
    with pytest.raises(AlbertError, match="no file matches"):
        pretraining_data.expand_input_files(f"{files[0]},{tmp_path}/missing-*.tfrecord")
    assert pretraining_data.expand_input_files(f"{os.path.dirname(files[0])}/*.tfrecord") == files


def test_stream_resumes_at_any_step_and_pipelines_are_disjoint(records):
    files, _ = records
    dataset_fn = pf.dataset_fn_for(files, 8, L, P)

    def ids(context, start_step=0, batches=12):
        stream = dataset_fn(context, start_step=start_step).take(batches)
        return [tuple(row) for b in stream for row in b["input_ids"].numpy()]

    two_workers = [tf.distribute.InputContext(2, pipeline, 2) for pipeline in (0, 1)]
    assert ids(two_workers[0]) == ids(two_workers[0])  # one deterministic stream
    # step s of a run (re)started at step 2 reads what step s of an uninterrupted run read:
    # 2 steps x 1 replica x 4 examples per worker, 2 x 2 x 4 when one pipeline feeds 2 replicas
    assert ids(two_workers[0], start_step=2, batches=10) == ids(two_workers[0])[2 * 4 :]
    two_replicas = tf.distribute.InputContext(1, 0, 2)
    assert ids(two_replicas, start_step=2, batches=8) == ids(two_replicas)[2 * 2 * 4 :]
    assert not set(ids(two_workers[0])) & set(ids(two_workers[1]))  # one file per worker


def test_checkpoint_interval_does_not_change_what_is_read(records, tmp_path):
    """Checkpoints leave the input stream alone: no re-reading the first records of the files."""
    files, config = records
    final = {}
    for every in (0, 2):
        trainer = pf.build_trainer(one_device(), config, str(tmp_path / f"every{every}"), 6)
        trainer.train(
            pf.dataset_fn_for(files, BATCH, L, P),
            6,
            BATCH,
            iterations_per_loop=2,
            save_checkpoints_steps=every,
        )
        final[every] = weights(trainer)
    assert pf.max_abs_difference(final[0], final[2], final[0]) < 1e-6


def test_consecutive_train_calls_go_on_with_one_iterator(records, tmp_path):
    """run_classifier.py calls train() once per epoch: the same steps as one call, one stream."""
    files, config = records
    one_call = pf.build_trainer(one_device(), config, None, 6)
    one_call.train(pf.dataset_fn_for(files, BATCH, L, P), 6, BATCH, iterations_per_loop=2)

    starts = []
    base_fn = pf.dataset_fn_for(files, BATCH, L, P)

    def dataset_fn(input_context=None, start_step=0):
        starts.append(start_step)
        return base_fn(input_context, start_step=start_step)

    per_epoch = pf.build_trainer(one_device(), config, None, 6)
    for end in (2, 4, 6):
        per_epoch.train(dataset_fn, end, BATCH, iterations_per_loop=2)
    assert step_losses(per_epoch) == step_losses(one_call)
    assert starts == [0]  # built once, never rebuilt
    assert pf.max_abs_difference(weights(per_epoch), weights(one_call), weights(one_call)) == 0

    # Another stream, or a trainer moved to another step, gets a new iterator at its step.
    other_fn = pf.dataset_fn_for(files, BATCH, L, P)
    per_epoch.global_step = 5
    starts.clear()
    per_epoch.train(dataset_fn, 6, BATCH)
    per_epoch.train(other_fn, 7, BATCH)
    assert starts == [5]


def test_mirrored_accumulation_and_xla_match_one_device(records, tmp_path):
    files, config = records
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "tests" / "mirrored_training_run.py"),
            str(REPO_ROOT),
            ",".join(files),
            config,
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["mirrored"]["replicas"] == 2 and result["one_device"]["replicas"] == 1
    reference = np.load(tmp_path / "one_device.npz")
    # same global batch: 2 replicas, k micro-batches and XLA change nothing but rounding
    for name in ("mirrored", "mirrored_accumulate_2", "one_device_accumulate_4", "one_device_xla"):
        np.testing.assert_allclose(
            result[name]["losses"], result["one_device"]["losses"], rtol=1e-5, err_msg=name
        )
        other = np.load(tmp_path / f"{name}.npz")
        assert pf.max_abs_difference(other, reference, reference.files) < 2e-5, name
