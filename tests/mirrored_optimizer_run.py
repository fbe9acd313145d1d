"""Helper run by tests/test_optimization.py in its own process (two logical CPU devices must
be configured before TensorFlow starts); prints RESULT {json}.

    python tests/mirrored_optimizer_run.py SHAPES_JSON
"""

# ruff: noqa: E402, B905 - imports follow the device set-up; zips are over equal lists

import json
import sys

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import optimization

SHAPES = json.loads(sys.argv[1])
NAMES = list(SHAPES)
rng = np.random.default_rng(2)
INIT = {n: rng.normal(size=s).astype(np.float32) for n, s in SHAPES.items()}
# Two replicas, three steps; replica r gets its own local gradients; the global one is their sum.
LOCAL = [
    [
        {
            n: (3.0 if step % 2 else 0.1) * rng.normal(size=s).astype(np.float32)
            for n, s in SHAPES.items()
        }
        for _ in range(2)
    ]
    for step in range(3)
]


def build(strategy):
    with strategy.scope():
        variables = {n: tf.Variable(INIT[n]) for n in NAMES}
        optimizer = optimization.create_optimizer(0.01, 10, 1, optimizer="lamb", style="google")
        optimizer.build(variables)
    return variables, optimizer


def values(variables, optimizer):
    named = {**variables, **optimizer.named_slot_variables()}
    return {n: [c.numpy() for c in getattr(v, "values", (v,))] for n, v in named.items()}


results = {}

# 1) Single device, global gradients.
variables, optimizer = build(tf.distribute.get_strategy())
for step in LOCAL:
    optimizer.apply_gradients((tf.constant(step[0][n] + step[1][n]), n) for n in NAMES)
single = values(variables, optimizer)

# 2) MirroredStrategy, update from the replica context inside tf.function.
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
variables, optimizer = build(mirrored)


@tf.function
def replica_step(per_replica_grads):
    def replica_fn(grads):
        grads = tf.distribute.get_replica_context().all_reduce("sum", grads)
        return optimizer.apply_gradients(zip(grads, NAMES), skip_if_nonfinite=True)

    return mirrored.run(replica_fn, args=(per_replica_grads,))


for step in LOCAL:
    grads = mirrored.experimental_distribute_values_from_function(
        lambda ctx, step=step: [tf.constant(step[ctx.replica_id_in_sync_group][n]) for n in NAMES]
    )
    applied = replica_step(grads)
    assert all(bool(a) for a in mirrored.experimental_local_results(applied))
results["mirrored_replica"] = values(variables, optimizer)
results["mirrored_replica_steps"] = [int(c) for c in optimizer.iterations.values]

# 2b) The same, with all steps in one tf.function loop (as iterations_per_loop does).
variables, optimizer = build(mirrored)
STACKED = [
    tf.constant(
        np.stack([[LOCAL[step][replica][n] for step in range(len(LOCAL))] for replica in range(2)])
    )
    for n in NAMES
]  # [replica, step, ...]


@tf.function
def replica_loop():
    def replica_fn(step):
        ctx = tf.distribute.get_replica_context()
        grads = [stacked[ctx.replica_id_in_sync_group][step] for stacked in STACKED]
        grads = ctx.all_reduce("sum", grads)
        optimizer.apply_gradients(zip(grads, NAMES))

    for step in tf.range(len(LOCAL)):
        mirrored.run(replica_fn, args=(step,))


replica_loop()
results["mirrored_loop"] = values(variables, optimizer)

# 3) MirroredStrategy, called eagerly in the cross-replica context with global gradients.
variables, optimizer = build(mirrored)
for step in LOCAL:
    optimizer.apply_gradients((tf.constant(step[0][n] + step[1][n]), n) for n in NAMES)
results["mirrored_cross_replica"] = values(variables, optimizer)

# 4) Single-worker MultiWorkerMirroredStrategy (one local replica), replica context. Its
# ReplicaContext.all_reduce fails inside tf.function on TF 2.21 ("destinations can not be
# empty"), and with one replica it is the identity, so the global gradients are fed directly.
multi_worker = tf.distribute.MultiWorkerMirroredStrategy()
variables, optimizer = build(multi_worker)


@tf.function
def multi_worker_step(grads):
    multi_worker.run(lambda grads: optimizer.apply_gradients(zip(grads, NAMES)), args=(grads,))


for step in LOCAL:
    multi_worker_step([tf.constant(step[0][n] + step[1][n]) for n in NAMES])
results["multi_worker"] = values(variables, optimizer)

worst = {}
for key in ("mirrored_replica", "mirrored_loop", "mirrored_cross_replica", "multi_worker"):
    diffs = [float(np.max(np.abs(copy - single[n][0]))) for n in single for copy in results[key][n]]
    worst[key] = {"max_abs_diff": max(diffs), "copies": len(results[key][NAMES[0]])}
worst["mirrored_replica_steps"] = results["mirrored_replica_steps"]
worst["single_moved"] = min(float(np.max(np.abs(single[n][0] - INIT[n]))) for n in NAMES)
print("RESULT " + json.dumps(worst), flush=True)
