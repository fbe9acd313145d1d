"""optimization.py against an independent NumPy (float64) reference of the originals' rules.

The reference below is written from the rules in docs/formats.md#optimizers, not from optimization.py: linear warmup
then polynomial decay from step 0, global-norm clipping, Adam moments without bias correction,
decoupled weight decay except LayerNorm/layer_norm/bias, and the LAMB trust ratio (google: not for
the excluded names; brightmart: for every variable).
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import errors
import optimization
from tests.conftest import REPO_ROOT

# TF runs in float32, the reference in float64; six steps stay within a few float32 ulp.
RTOL, ATOL = 1e-5, 1e-7

EXCLUDED = ("LayerNorm", "layer_norm", "bias")

# Names in the original checkpoint layouts, chosen to hit and miss the exclusions.
SHAPES = {
    "bert/encoder/transformer/group_0/inner_group_0/attention_1/self/query/kernel": (4, 3),
    "bert/encoder/transformer/group_0/inner_group_0/LayerNorm/gamma": (3,),
    "bert/encoder/layer_shared/attention/output/dense/bias": (3,),
    "bert/embeddings/word_embeddings": (5, 2),
    "cls/predictions/output_bias": (5,),  # zero-initialised: exercises ||w|| = 0
    "loss/layer_norm/beta": (3,),
}
ZERO_INITIALISED = {"cls/predictions/output_bias"}


def initial_values():
    rng = np.random.default_rng(0)
    # Rounded to float32 first, so that the reference starts from exactly the TF weights.
    return {
        name: (
            np.zeros(shape)
            if name in ZERO_INITIALISED
            else rng.normal(size=shape).astype(np.float32).astype(np.float64)
        )
        for name, shape in SHAPES.items()
    }


def gradient_steps(num_steps=6):
    """Per-step gradients; odd steps are large (clipping active), even steps small (inactive)."""
    rng = np.random.default_rng(1)
    steps = []
    for step in range(num_steps):
        scale = 3.0 if step % 2 else 0.05
        steps.append({name: scale * rng.normal(size=shape) for name, shape in SHAPES.items()})
    return steps


# ------------------------------------------------------------------------ NumPy reference
def reference_lr(step, lr, num_train_steps, num_warmup_steps, power=1.0, end_lr=0.0):
    if num_warmup_steps > 0 and step < num_warmup_steps:
        return lr * step / num_warmup_steps
    fraction_left = 1.0 - min(step, num_train_steps) / num_train_steps
    return (lr - end_lr) * fraction_left**power + end_lr


def reference_clip(grads, clip_norm):
    global_norm = np.sqrt(sum(np.sum(g * g) for g in grads.values()))
    scale = clip_norm / max(global_norm, clip_norm)
    return {name: g * scale for name, g in grads.items()}


def reference_step(params, m, v, grads, lr, kind, style, wd=0.01, b1=0.9, b2=0.999, eps=1e-6):
    """One step of AdamW ("adamw") or LAMB ("lamb") on dicts of float64 arrays, in place."""
    grads = reference_clip(grads, 1.0)
    for name, g in grads.items():
        w = params[name]
        m[name] = b1 * m[name] + (1 - b1) * g
        v[name] = b2 * v[name] + (1 - b2) * g * g
        update = m[name] / (np.sqrt(v[name]) + eps)
        if not any(re.search(p, name) for p in EXCLUDED):
            update = update + wd * w
        ratio = 1.0
        if kind == "lamb" and (
            style == "brightmart" or not any(re.search(p, name) for p in EXCLUDED)
        ):
            w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(update)
            ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
        params[name] = w - lr * ratio * update


# ------------------------------------------------------------------------ helpers
LR, TRAIN_STEPS, WARMUP_STEPS = 0.01, 10, 3


def make_optimizer(kind, style, named_variables):
    optimizer = optimization.create_optimizer(
        LR, TRAIN_STEPS, WARMUP_STEPS, optimizer=kind, style=style
    )
    optimizer.build(named_variables)
    return optimizer


def tf_variables(values):
    return {
        name: tf.Variable(value, dtype=tf.float32, name=name.replace("/", "_"))
        for name, value in values.items()
    }


def run_reference(kind, style, steps):
    params = initial_values()
    m = {name: np.zeros(shape) for name, shape in SHAPES.items()}
    v = {name: np.zeros(shape) for name, shape in SHAPES.items()}
    history = []
    for step, grads in enumerate(steps):
        reference_step(
            params, m, v, grads, reference_lr(step, LR, TRAIN_STEPS, WARMUP_STEPS), kind, style
        )
        history.append(({k: x.copy() for k, x in params.items()}, dict(m), dict(v)))
    return history


OPTIMIZERS = [("adamw", "google"), ("lamb", "google"), ("lamb", "brightmart")]
SLOT_SUFFIXES = {
    ("adamw", "google"): ("adam_m", "adam_v"),
    ("lamb", "google"): ("adam_m", "adam_v"),
    ("lamb", "brightmart"): ("lamb_m", "lamb_v"),
}


# ------------------------------------------------------------------------ schedule
@pytest.mark.parametrize("num_warmup_steps", [0, 100])
@pytest.mark.parametrize("power,end_lr", [(1.0, 0.0), (2.0, 1e-5)])
def test_schedule_matches_reference(num_warmup_steps, power, end_lr):
    lr, num_train_steps = 1e-3, 1000
    schedule = optimization.LinearWarmupPolynomialDecay(
        lr, num_train_steps, num_warmup_steps, power=power, end_learning_rate=end_lr
    )
    steps = [
        0,
        num_warmup_steps - 1,
        num_warmup_steps,
        num_train_steps // 2,
        num_train_steps,
        num_train_steps + 10,
    ]
    for step in [s for s in steps if s >= 0]:
        expected = reference_lr(step, lr, num_train_steps, num_warmup_steps, power, end_lr)
        got = float(schedule(tf.constant(step, tf.int64)))
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12, err_msg=f"step {step}")


def test_schedule_landmarks():
    """The originals' quirks, by hand: lr 0 at step 0 and a drop to lr*(1-W/T) after warmup."""
    schedule = optimization.LinearWarmupPolynomialDecay(1.0, 1000, 100)
    assert float(schedule(0)) == 0.0
    np.testing.assert_allclose(float(schedule(99)), 0.99, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(100)), 0.9, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(500)), 0.5, rtol=1e-6)
    assert float(schedule(1000)) == 0.0 and float(schedule(1010)) == 0.0  # no cycling
    no_warmup = optimization.LinearWarmupPolynomialDecay(1.0, 1000, 0)
    assert float(no_warmup(0)) == 1.0


def test_schedule_rejects_bad_steps():
    with pytest.raises(errors.AlbertError, match="num_train_steps"):
        optimization.LinearWarmupPolynomialDecay(1e-3, 0, 0)
    with pytest.raises(errors.AlbertError, match="num_warmup_steps"):
        optimization.LinearWarmupPolynomialDecay(1e-3, 10, -1)


# ------------------------------------------------------------------------ update rules
@pytest.mark.parametrize("kind,style", OPTIMIZERS)
def test_updates_match_numpy_reference(kind, style):
    steps = gradient_steps()
    expected = run_reference(kind, style, steps)
    variables = tf_variables(initial_values())
    optimizer = make_optimizer(kind, style, variables)
    suffix_m, suffix_v = SLOT_SUFFIXES[(kind, style)]
    slots = optimizer.named_slot_variables()
    for step, grads in enumerate(steps):
        applied = optimizer.apply_gradients(
            (tf.constant(g, tf.float32), name) for name, g in grads.items()
        )
        assert bool(applied)
        params, m, v = expected[step]
        for name in SHAPES:
            np.testing.assert_allclose(
                variables[name].numpy(),
                params[name],
                rtol=RTOL,
                atol=ATOL,
                err_msg=f"{name} step {step}",
            )
            np.testing.assert_allclose(
                slots[f"{name}/{suffix_m}"].numpy(), m[name], rtol=RTOL, atol=ATOL
            )
            np.testing.assert_allclose(
                slots[f"{name}/{suffix_v}"].numpy(), v[name], rtol=RTOL, atol=1e-9
            )
    assert int(optimizer.iterations) == len(steps)


def test_flavours_really_differ():
    """Guards the reference itself: google LAMB leaves LayerNorm/bias unratioed, brightmart not."""
    steps = gradient_steps(3)
    google = run_reference("lamb", "google", steps)[-1][0]
    brightmart = run_reference("lamb", "brightmart", steps)[-1][0]
    adamw = run_reference("adamw", "google", steps)[-1][0]
    gamma = "bert/encoder/transformer/group_0/inner_group_0/LayerNorm/gamma"
    kernel = "bert/encoder/transformer/group_0/inner_group_0/attention_1/self/query/kernel"
    np.testing.assert_array_equal(google[gamma], adamw[gamma])
    assert not np.allclose(brightmart[gamma], google[gamma])
    np.testing.assert_array_equal(google[kernel], brightmart[kernel])
    assert not np.allclose(google[kernel], adamw[kernel])


@pytest.mark.parametrize("kind,style", OPTIMIZERS)
def test_slot_names_and_variables(kind, style):
    variables = tf_variables(initial_values())
    optimizer = make_optimizer(kind, style, variables)
    slots = optimizer.named_slot_variables()
    expected = {f"{name}/{suffix}" for name in SHAPES for suffix in SLOT_SUFFIXES[(kind, style)]}
    assert set(slots) == expected
    for slot_name, slot in slots.items():
        base = slot_name.rsplit("/", 1)[0]
        assert not slot.trainable and slot.dtype == tf.float32
        assert slot.shape == variables[base].shape and not np.any(slot.numpy())
    assert optimizer.iterations.dtype == tf.int64 and int(optimizer.iterations) == 0


def test_tf_function_and_xla_equal_eager():
    steps = gradient_steps(4)
    results = {}
    for mode in ("eager", "function", "jit_compile"):
        variables = tf_variables(initial_values())
        optimizer = make_optimizer("lamb", "google", variables)
        names = list(SHAPES)

        def train_step(grads, optimizer=optimizer, names=names):
            return optimizer.apply_gradients(zip(grads, names, strict=True), skip_if_nonfinite=True)

        if mode != "eager":
            train_step = tf.function(train_step, jit_compile=mode == "jit_compile")
        for grads in steps:
            train_step([tf.constant(grads[name], tf.float32) for name in names])
        results[mode] = {name: var.numpy() for name, var in variables.items()}
        assert int(optimizer.iterations) == len(steps)
    for mode in ("function", "jit_compile"):
        for name in SHAPES:
            np.testing.assert_allclose(
                results[mode][name],
                results["eager"][name],
                rtol=1e-6,
                atol=1e-7,
                err_msg=f"{mode} {name}",
            )


def test_low_precision_gradients_are_applied_in_float32():
    """bfloat16/float16 gradients update the float32 weights like their float32 values."""
    name = "bert/pooler/dense/kernel"
    grad = np.array([[0.5, -1.25], [2.0, 0.0]])
    results = []
    for dtype in (tf.float32, tf.bfloat16, tf.float16):
        variables = tf_variables({name: np.ones((2, 2))})
        optimizer = make_optimizer("adamw", "google", variables)
        optimizer.apply_gradients([(tf.constant(grad, dtype), name)])
        optimizer.apply_gradients([(tf.constant(grad, dtype), name)])
        assert variables[name].dtype == tf.float32
        results.append(variables[name].numpy())
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])  # the values are exact in all dtypes


def test_none_gradients_are_skipped():
    variables = tf_variables(initial_values())
    optimizer = make_optimizer("adamw", "google", variables)
    skipped = "bert/embeddings/word_embeddings"
    grads = gradient_steps(1)[0]
    pairs = [
        (None if name == skipped else tf.constant(g, tf.float32), name) for name, g in grads.items()
    ]
    optimizer.apply_gradients(pairs)
    optimizer.apply_gradients(pairs)
    np.testing.assert_array_equal(variables[skipped].numpy(), initial_values()[skipped])
    assert not np.any(optimizer.named_slot_variables()[skipped + "/adam_m"].numpy())
    # The others match a reference run that never saw the skipped variable.
    reference = {name: g for name, g in grads.items() if name != skipped}
    params, m, v = (
        initial_values(),
        {n: np.zeros(s) for n, s in SHAPES.items()},
        {n: np.zeros(s) for n, s in SHAPES.items()},
    )
    for step in range(2):
        reference_step(
            params,
            m,
            v,
            reference,
            reference_lr(step, LR, TRAIN_STEPS, WARMUP_STEPS),
            "adamw",
            "google",
        )
    for name in reference:
        np.testing.assert_allclose(variables[name].numpy(), params[name], rtol=RTOL, atol=ATOL)


def test_indexed_slices_gradient_is_applied_densely():
    """An embedding gradient (IndexedSlices with a repeated row) equals its dense sum."""
    values = tf.constant([[1.0, 2.0], [3.0, 4.0], [0.5, 0.5]])
    indices = tf.constant([0, 3, 0])
    sparse = tf.IndexedSlices(values, indices, dense_shape=tf.constant([5, 2]))
    dense = tf.math.unsorted_segment_sum(values, indices, 5)
    name = "bert/embeddings/word_embeddings"
    results = []
    for grad in (sparse, dense):
        variables = tf_variables({name: initial_values()[name]})
        optimizer = make_optimizer("lamb", "brightmart", variables)
        optimizer.apply_gradients([(grad, name)])
        optimizer.apply_gradients([(grad, name)])
        results.append(variables[name].numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6, atol=1e-7)


def test_skip_if_nonfinite_leaves_everything_unchanged():
    variables = tf_variables(initial_values())
    optimizer = make_optimizer("lamb", "google", variables)
    grads = gradient_steps(2)
    optimizer.apply_gradients((tf.constant(g, tf.float32), n) for n, g in grads[0].items())
    before = {n: v.numpy() for n, v in {**variables, **optimizer.named_slot_variables()}.items()}

    bad = dict(grads[1])
    bad["loss/layer_norm/beta"] = np.array([1.0, np.inf, 0.0])
    bad["bert/embeddings/word_embeddings"] = np.full((5, 2), np.nan)
    applied = tf.function(lambda pairs: optimizer.apply_gradients(pairs, skip_if_nonfinite=True))(
        [(tf.constant(g, tf.float32), n) for n, g in bad.items()]
    )
    assert not bool(applied)
    assert int(optimizer.iterations) == 1
    after = {n: v.numpy() for n, v in {**variables, **optimizer.named_slot_variables()}.items()}
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)

    # A finite step right after is applied as usual.
    applied = optimizer.apply_gradients(
        ((tf.constant(g, tf.float32), n) for n, g in grads[1].items()), skip_if_nonfinite=True
    )
    assert bool(applied) and int(optimizer.iterations) == 2


def test_clip_norm_none_disables_clipping():
    name = "bert/pooler/dense/kernel"
    weights = np.ones((2, 2))
    grad = np.full((2, 2), 10.0)
    variables = tf_variables({name: weights})
    optimizer = optimization.AdamWeightDecay(0.1, weight_decay_rate=0.0, clip_norm=None)
    optimizer.build(variables)
    optimizer.apply_gradients([(tf.constant(grad, tf.float32), name)])
    # Unclipped first step: m = 1, v = 0.1, update = 1/(sqrt(0.1)+eps).
    np.testing.assert_allclose(
        optimizer.named_slot_variables()[name + "/adam_m"].numpy(), 1.0, rtol=1e-6
    )
    np.testing.assert_allclose(
        variables[name].numpy(), 1.0 - 0.1 / (np.sqrt(0.1) + 1e-6), rtol=1e-6
    )


def test_learning_rate_multipliers_scale_one_variable():
    """--crf_learning_rate: a variable's step is the schedule's times its factor, others as is."""
    grad = tf.constant([[10.0, -10.0]])
    moved = {}
    for factor in (1.0, 100.0):
        variables = tf_variables(
            {"output_transitions": np.zeros((1, 2)), "output_bias": np.zeros(2)}
        )
        optimizer = optimization.create_optimizer(
            1e-4,
            10,
            0,
            weight_decay_rate=0.0,
            learning_rate_multipliers={"output_transitions": factor},
        )
        optimizer.build(variables)
        optimizer.apply_gradients([(grad, "output_transitions"), (grad[0], "output_bias")])
        moved[factor] = (variables["output_transitions"].numpy(), variables["output_bias"].numpy())
    np.testing.assert_allclose(moved[100.0][0], 100.0 * moved[1.0][0], rtol=1e-5)
    np.testing.assert_array_equal(moved[100.0][1], moved[1.0][1])
    assert np.abs(moved[1.0][0]).min() > 0


def test_create_optimizer_choices_and_errors():
    assert isinstance(optimization.create_optimizer(1e-4, 10, 1), optimization.AdamWeightDecay)
    lamb = optimization.create_optimizer(1e-4, 10, 1, optimizer="lamb", style="brightmart")
    assert isinstance(lamb, optimization.LAMB) and lamb.slot_suffixes == ("lamb_m", "lamb_v")
    with pytest.raises(errors.AlbertError, match="adamw"):
        optimization.create_optimizer(1e-4, 10, 1, optimizer="sgd")
    with pytest.raises(errors.AlbertError, match="style"):
        optimization.create_optimizer(1e-4, 10, 1, optimizer="lamb", style="bert")
    optimizer = optimization.create_optimizer(1e-4, 10, 1)
    optimizer.build(tf_variables({"a/kernel": np.ones(2)}))
    with pytest.raises(ValueError, match="b/kernel"):
        optimizer.apply_gradients([(tf.ones(2), "b/kernel")])


# ------------------------------------------------------------------------ tf.distribute


def test_mirrored_two_cpus_equals_single_device(tmp_path):
    """Replica-context (merge_call) and cross-replica updates on 2 logical CPUs, plus a local
    MultiWorkerMirroredStrategy, all equal the single-device update with the summed gradients."""
    shapes = {
        "bert/encoder/embedding_hidden_mapping_in/kernel": [3, 4],
        "bert/encoder/embedding_hidden_mapping_in/bias": [4],
        "bert/embeddings/LayerNorm/gamma": [3],
    }
    env = dict(
        os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""
    )
    # A file rather than `python -c`: AutoGraph needs the source to convert the tf.range loop.
    script = REPO_ROOT / "tests" / "mirrored_optimizer_run.py"
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(shapes)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["mirrored_replica"]["copies"] == 2
    assert result["mirrored_cross_replica"]["copies"] == 2
    assert result["mirrored_loop"]["copies"] == 2
    assert result["mirrored_replica_steps"] == [3, 3]
    assert result["single_moved"] > 1e-4  # every weight really changed
    for key in ("mirrored_replica", "mirrored_loop", "mirrored_cross_replica", "multi_worker"):
        assert result[key]["max_abs_diff"] <= 1e-6, (key, result[key])
