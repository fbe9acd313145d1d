"""Shared training machinery for run_pretraining.py and run_classifier.py, on tf.distribute.

The original scripts train through TPUEstimator (TF 1.x). This module is its TF2 replacement,
one place for:

1. Strategy from flags: `create_strategy("auto" | "one_device" | "mirrored" | "multi_worker" |
   "tpu", ...)`. auto = TPU if --use_tpu, multi-worker if TF_CONFIG names several tasks,
   mirrored if there are several GPUs, else one device.
2. Precision: `compute_dtype("fp32" | "bf16" | "fp16")` for `model.set_compute_dtype`; fp16 gets
   dynamic loss scaling inside the `Trainer`.
3. TFRecord input: `expand_input_files`, `pretraining_feature_spec`, `check_tfrecord_schema`,
   `make_dataset_fn` (glob/comma files, file shuffle, interleave, shuffle buffer, int64->int32,
   per-replica batches, one shard per input pipeline, deterministic given a seed).
4. The loop, `Trainer.train`: `iterations_per_loop` steps run inside ONE tf.function
   (a `tf.range` loop calling `strategy.run` per step), then the host logs, writes TensorBoard
   summaries and checkpoints, as TPUEstimator does. A step = k micro-batches of gradient
   accumulation, one all-reduce (sum) of the gradients, one optimizer update.
5. Checkpoints in the originals' name-based format: `output_dir/model.ckpt-<step>` holds the
   model variables under their original names, the optimizer slots (`<name>/adam_m` ...),
   `global_step` and the few extra things exact resumption needs under `training_state/...`
   (skipped by modeling.load_checkpoint). The `checkpoint` state file is rewritten atomically
   only after a save completed, so a kill -9 mid-save never leaves a half checkpoint as latest.
6. `Trainer.evaluate`: streaming (sum, count) metrics over replicas and batches.

The loss contract (shared by training and eval, and by every model):

    loss_fn(features, training) -> (loss_sums, metrics)
        loss_sums: dict term -> scalar SUM over this (micro-)batch, e.g. sum of per-example CE
        metrics:   dict name -> (sum, count) scalars, e.g. (number correct, number of examples)
    loss_weights_fn(features) -> dict term -> scalar weight of the batch (default: batch size)

The objective is sum_term (global sum of loss_sums[term]) / (global weight[term] + 1e-5), the
"global" meaning over all replicas and all accumulated micro-batches of the step. So the loss
and its gradient do not depend on how the global batch is split: one device, 8 replicas or
4 micro-batches give the same numbers (the 1e-5 is the originals' masked-LM normaliser).

Input position for exact resumption: the training stream is ONE deterministic stream (fixed
seed) read from start to end by an uninterrupted run; checkpoints do not touch it. A run that
resumes at step s asks `dataset_fn(input_context, start_step=s)` for the same stream advanced by
s steps (make_dataset_fn skips the records already read, before parsing them), so a resumed run
and an uninterrupted one read identical batches. No iterator state is stored (tf.distribute's
iterators cannot be checkpointed), only global_step. Within a process, a train() call that goes
on from where the last one stopped, with the same dataset_fn, keeps reading its iterator.
"""

import functools
import glob
import itertools
import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

import modeling
from errors import AlbertError

PRECISIONS = {"fp32": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
LOSS_NORMALIZER_EPSILON = 1e-5   # the originals' masked-LM denominator: sum(w) + 1e-5
TRAINING_STATE_PREFIX = "training_state/global_step/"   # ignored by every checkpoint reader


# ----------------------------------------------------------------------------------------------
# Strategy and precision.
# ----------------------------------------------------------------------------------------------

def _tf_config_task_count():
    """Number of tasks (chief + workers) that TF_CONFIG describes (0 without TF_CONFIG)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as e:
        raise AlbertError(f"TF_CONFIG is not valid JSON ({e}); unset it or fix it") from None
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def create_strategy(strategy="auto", use_tpu=False, tpu_name=None, tpu_zone=None,
                    gcp_project=None):
    """The tf.distribute strategy chosen by the flags.

    Must run before any other TensorFlow op (multi-worker and TPU set up the runtime).
    TPU: `--use_tpu --tpu_name=NAME [--tpu_zone --gcp_project]` resolves the TPU with
    TPUClusterResolver, connects to it and builds a TPUStrategy over all its cores.
    """
    if strategy not in STRATEGIES:
        raise AlbertError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if strategy == "auto":
        gpus = tf.config.list_physical_devices("GPU")
        if use_tpu:
            strategy = "tpu"
        elif _tf_config_task_count() > 1:
            strategy = "multi_worker"
        elif len(gpus) > 1:
            strategy = "mirrored"
        else:
            strategy = "one_device"
    if use_tpu and strategy != "tpu":
        raise AlbertError(f"--use_tpu contradicts --strategy={strategy}; drop one of them")

    if strategy == "tpu":
        if not tpu_name:
            raise AlbertError("--use_tpu / --strategy=tpu needs --tpu_name (the TPU's name or "
                              "grpc:// address)")
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=tpu_name, zone=tpu_zone, project=gcp_project)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        result = tf.distribute.TPUStrategy(resolver)
    elif strategy == "multi_worker":
        if _tf_config_task_count() < 1:
            raise AlbertError("--strategy=multi_worker needs TF_CONFIG describing the cluster "
                              '(e.g. {"cluster": {"worker": [...]}, "task": {...}})')
        result = tf.distribute.MultiWorkerMirroredStrategy()
    elif strategy == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        # Without GPUs, mirror over the logical CPU devices (tests configure several).
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        result = tf.distribute.MirroredStrategy(devices=devices)
    else:
        gpus = tf.config.list_logical_devices("GPU")
        result = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    logging.info("strategy %s with %d replica(s)", type(result).__name__,
                 result.num_replicas_in_sync)
    return result


def compute_dtype(precision):
    """tf dtype for --precision (fp32 | bf16 | fp16): pass it to model.set_compute_dtype."""
    if precision not in PRECISIONS:
        raise AlbertError(f"--precision must be one of {', '.join(PRECISIONS)}, "
                          f"got {precision!r}")
    return PRECISIONS[precision]


def is_chief(strategy):
    """True on the one task that writes checkpoints, logs and summaries."""
    return bool(strategy.extended.should_checkpoint)


# ----------------------------------------------------------------------------------------------
# TFRecord input.
# ----------------------------------------------------------------------------------------------

def expand_input_files(patterns, flag_name="input_file"):
    """Comma-separated files or globs -> sorted list of existing files (AlbertError if none)."""
    files = []
    for pattern in (p.strip() for p in str(patterns or "").split(",")):
        if not pattern:
            continue
        matches = sorted(tf.io.gfile.glob(pattern)) if glob.has_magic(pattern) else (
            [pattern] if tf.io.gfile.exists(pattern) else [])
        if not matches:
            raise AlbertError(f"--{flag_name}: no file matches {pattern!r}; check the path "
                              "(comma-separated files and globs are accepted)")
        files.extend(matches)
    if not files:
        raise AlbertError(f"--{flag_name} is empty: give TFRecord files (comma list or glob)")
    return files


def pretraining_feature_spec(max_seq_length, max_predictions_per_seq):
    """The docs §3 schema of the pretraining TFRecords (both generators)."""
    L, P = max_seq_length, max_predictions_per_seq
    return {
        "input_ids": tf.io.FixedLenFeature([L], tf.int64),
        "input_mask": tf.io.FixedLenFeature([L], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([L], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([P], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([P], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([P], tf.float32),
        "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
    }


def check_tfrecord_schema(path, name_to_features, flag_for_feature=None):
    """Parse the first record of `path` by hand; one clear AlbertError if it does not fit.

    TF's own error for a length mismatch is "Key: masked_lm_ids. Can't parse serialized
    Example"; this names the file, the feature, both lengths and the flag to change instead.
    Extra features (Google's `token_boundary`) are fine.
    """
    flag_for_feature = flag_for_feature or {}
    try:
        first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except tf.errors.OpError as e:
        raise AlbertError(f"{path} is not a readable TFRecord file ({modeling._first_line(e)})"
                          ) from None
    if first is None:
        raise AlbertError(f"{path} holds no records; regenerate it or drop it from the list")
    try:
        example = tf.train.Example.FromString(first.numpy())
    except Exception:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise AlbertError(f"{path}: the first record is not a tf.train.Example") from None
    features = example.features.feature
    for name, spec in name_to_features.items():
        if name not in features:
            raise AlbertError(f"{path}: record 0 has no feature {name!r} (it has "
                              f"{', '.join(sorted(features))}); was it written for another task?")
        kind = features[name].WhichOneof("kind")
        values = getattr(features[name], kind).value if kind else []
        expected = int(np.prod(spec.shape)) if spec.shape else 1
        if len(values) != expected:
            hint = flag_for_feature.get(name)
            fix = (f"pass --{hint}={len(values)} (the value the data was generated with)"
                   if hint else "regenerate the data with matching lengths")
            raise AlbertError(f"{path}: feature {name!r} has length {len(values)} but "
                              f"{expected} is expected; {fix}")


def decode_record(record, name_to_features):
    """Parse one serialized Example; int64 -> int32 (what the model and TPUs want)."""
    example = tf.io.parse_single_example(record, name_to_features)
    return {name: tf.cast(t, tf.int32) if t.dtype == tf.int64 else t
            for name, t in example.items()}


def make_dataset_fn(files, name_to_features, global_batch_size, is_training, shuffle_buffer=100,
                    cycle_length=4, drop_remainder=None, seed=12345):
    """A `dataset_fn(input_context=None, start_step=0)` for distribute_datasets_from_function.

    Training: shuffle files (reshuffled each epoch) -> repeat -> interleave `cycle_length` files
    -> shuffle(`shuffle_buffer`) -> skip what steps < start_step read -> parse -> batch
    (per-replica batch, drop_remainder). One endless stream, deterministic given the seed.
    Eval: the files in order, once, not shuffled (drop_remainder defaults to False so no
    example is lost).
    Each input pipeline (one per worker) reads its own shard: whole files if there are enough,
    else every n-th record. The batch is the per-replica batch = global / replicas.
    """
    files = list(files)
    if drop_remainder is None:
        drop_remainder = is_training

    def dataset_fn(input_context=None, start_step=0):
        batch_size = (input_context.get_per_replica_batch_size(global_batch_size)
                      if input_context else global_batch_size)
        num_pipelines = input_context.num_input_pipelines if input_context else 1
        pipeline_id = input_context.input_pipeline_id if input_context else 0
        replicas_per_pipeline = (input_context.num_replicas_in_sync // num_pipelines
                                 if input_context else 1)
        shard_files = num_pipelines > 1 and len(files) >= num_pipelines

        dataset = tf.data.Dataset.from_tensor_slices(tf.constant(files))
        if shard_files:
            dataset = dataset.shard(num_pipelines, pipeline_id)
        if is_training:
            dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
            dataset = dataset.repeat()
            dataset = dataset.interleave(
                tf.data.TFRecordDataset, cycle_length=min(cycle_length, len(files)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        else:
            dataset = dataset.flat_map(tf.data.TFRecordDataset)
        if num_pipelines > 1 and not shard_files:
            dataset = dataset.shard(num_pipelines, pipeline_id)
        if is_training and shuffle_buffer > 1:
            dataset = dataset.shuffle(shuffle_buffer, seed=seed + 1)
        if is_training and start_step:
            # Resuming: each earlier step read one batch per local replica from this pipeline.
            # Skipping before parsing costs one sequential read of those records.
            records = start_step * replicas_per_pipeline * batch_size
            logging.info("input pipeline %d resumes at step %d: skipping the %d records it "
                         "already read", pipeline_id, start_step, records)
            dataset = dataset.skip(records)
        dataset = dataset.map(lambda r: decode_record(r, name_to_features),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        return dataset.prefetch(tf.data.AUTOTUNE)

    return dataset_fn


# ----------------------------------------------------------------------------------------------
# Checkpoint files.
# ----------------------------------------------------------------------------------------------

def checkpoint_prefix(output_dir, step):
    return os.path.join(output_dir, f"model.ckpt-{step}")


def latest_checkpoint(output_dir):
    """Prefix of the last COMPLETE checkpoint of output_dir (None if there is none)."""
    if not output_dir or not tf.io.gfile.exists(os.path.join(output_dir, "checkpoint")):
        return None
    path = tf.train.latest_checkpoint(output_dir)
    if path and tf.io.gfile.exists(path + ".index"):
        return path
    return None


def checkpoint_step(prefix):
    """The step number in `.../model.ckpt-<step>`."""
    return int(prefix.rsplit("-", 1)[1])


def write_checkpoint_state(output_dir, latest_prefix, all_prefixes):
    """Atomically point the `checkpoint` state file at `latest_prefix` (write temp, rename)."""
    lines = [f'model_checkpoint_path: "{os.path.basename(latest_prefix)}"']
    lines += [f'all_model_checkpoint_paths: "{os.path.basename(p)}"' for p in all_prefixes]
    final = os.path.join(output_dir, "checkpoint")
    temp = final + ".tmp"
    with open(temp, "w") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, final)   # atomic: readers see the old or the new file, never half of one


def _listed_checkpoints(output_dir):
    state = tf.train.get_checkpoint_state(output_dir) if output_dir else None
    if state is None:
        return []
    return [p for p in state.all_model_checkpoint_paths if tf.io.gfile.exists(p + ".index")]


def _delete_checkpoint_files(prefix):
    for path in tf.io.gfile.glob(prefix + ".*"):
        tf.io.gfile.remove(path)


# ----------------------------------------------------------------------------------------------
# The trainer.
# ----------------------------------------------------------------------------------------------

def _batch_size(features):
    return tf.cast(tf.shape(tf.nest.flatten(features)[0])[0], tf.float32)


def default_loss_weights(features):
    """Every loss term is a mean over examples: weight = number of examples in the batch."""
    return {"loss": _batch_size(features)}


def _add(a, b):
    return tf.nest.map_structure(tf.add, a, b)


def _scalar_metadata():
    """SummaryMetadata of TensorBoard's scalars plugin (tensorboard itself need not be installed)."""
    from tensorflow.core.framework import summary_pb2
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    metadata.data_class = summary_pb2.DATA_CLASS_SCALAR
    return metadata.SerializeToString()


def write_scalars(writer, step, values):
    """Write {tag: float} as TensorBoard scalars at `step` with only TF core ops."""
    metadata = _scalar_metadata()
    with writer.as_default(step=step):
        for tag, value in values.items():
            tf.summary.write(tag, tf.constant(float(value), tf.float32), metadata=metadata)
    writer.flush()


class Trainer:
    """Trains `model` with `optimizer` on `loss_fn` under `strategy`; see the module docstring.

    Build the model and call `optimizer.build(model.named_variables())` inside
    `strategy.scope()` before creating the Trainer. Typical use:

        trainer = Trainer(strategy, model, optimizer, loss_fn, output_dir=..., precision="bf16")
        trainer.restore_or_initialize(init_checkpoint)      # resume beats init_checkpoint
        trainer.train(dataset_fn, num_train_steps, global_batch_size, iterations_per_loop=100,
                      save_checkpoints_steps=1000)
        results = trainer.evaluate(eval_dataset_fn, max_steps=100)
    """

    def __init__(self, strategy, model, optimizer, loss_fn, output_dir, loss_weights_fn=None,
                 precision="fp32", use_xla=False, gradient_accumulation_steps=1,
                 keep_checkpoint_max=5, init_loss_scale=2.0**15, loss_scale_period=2000):
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.loss_weights_fn = loss_weights_fn or default_loss_weights
        self.output_dir = output_dir
        self.precision = precision
        self.use_xla = bool(use_xla)
        self.accumulation = int(gradient_accumulation_steps)
        if self.accumulation < 1:
            raise AlbertError("--gradient_accumulation_steps must be >= 1, got "
                              f"{gradient_accumulation_steps}")
        self.keep_checkpoint_max = keep_checkpoint_max
        self.is_chief = is_chief(strategy)
        self.global_step = 0          # steps run (host side; written as `global_step`)
        self.history = []             # one dict per host loop: step, loss, examples/s, ...
        self.step_losses = []         # the loss of every step (tests compare them)
        self.loss_scale_period = int(loss_scale_period)
        model.set_compute_dtype(compute_dtype(precision))

        self._names = list(model.named_variables())
        self._variables = [model.named_variables()[n] for n in self._names]
        with strategy.scope():
            # fp16 dynamic loss scaling state; every replica computes the same values, so
            # ONLY_FIRST_REPLICA lets the replica step assign them directly.
            on_first = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_WRITE,
                            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.loss_scale = tf.Variable(init_loss_scale if precision == "fp16" else 1.0,
                                          dtype=tf.float32, name="loss_scale", **on_first)
            self.good_steps = tf.Variable(0, dtype=tf.int64, name="good_steps", **on_first)
        self._compute = tf.function(self._compute_gradients, jit_compile=self.use_xla,
                                    reduce_retracing=True)
        self._train_steps = None
        self._kept_input = None  # (dataset_fn, its iterator, the step it stands at)
        self._eval_step = None
        self._writer = None

    # -- the replica step -------------------------------------------------------------------

    def _objective(self, features, totals, training):
        loss_sums, metrics = self.loss_fn(features, training)
        loss = tf.add_n([tf.cast(loss_sums[t], tf.float32) /
                         (totals[t] + LOSS_NORMALIZER_EPSILON) for t in sorted(loss_sums)])
        return loss, metrics

    def _compute_gradients(self, features, totals):
        """Forward + backward of one micro-batch (XLA-compiled with --use_xla)."""
        with tf.GradientTape() as tape:
            loss, metrics = self._objective(features, totals, training=True)
            scaled = loss * self.loss_scale if self.precision == "fp16" else loss
        grads = tape.gradient(scaled, self._variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                 for g, v in zip(grads, self._variables, strict=True)]
        return loss, grads, metrics

    def _replica_step(self, features):
        ctx = tf.distribute.get_replica_context()
        weights = {t: tf.cast(w, tf.float32) for t, w in self.loss_weights_fn(features).items()}
        totals = ctx.all_reduce(tf.distribute.ReduceOp.SUM, weights)
        k = self.accumulation
        if k == 1:
            loss, grads, metrics = self._compute(features, totals)
        else:
            def micro_batch(i):
                return tf.nest.map_structure(
                    lambda t: tf.reshape(t, tf.concat([[k, -1], tf.shape(t)[1:]], 0))[i],
                    features)
            loss, grads, metrics = self._compute(micro_batch(0), totals)
            for i in tf.range(1, k):
                l_i, g_i, m_i = self._compute(micro_batch(i), totals)
                loss, grads, metrics = loss + l_i, _add(grads, g_i), _add(metrics, m_i)
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if self.precision == "fp16":
            grads = [g / self.loss_scale for g in grads]
            finite = self.optimizer.apply_gradients(zip(grads, self._names, strict=True),
                                                    skip_if_nonfinite=True)
            self._update_loss_scale(finite)
        else:
            self.optimizer.apply_gradients(zip(grads, self._names, strict=True))
        return loss, metrics

    def _update_loss_scale(self, finite):
        """Dynamic loss scaling: halve on overflow, double after `loss_scale_period` good steps."""
        grow = tf.logical_and(finite, self.good_steps + 1 >= self.loss_scale_period)
        new_scale = tf.where(finite, tf.where(grow, self.loss_scale * 2.0, self.loss_scale),
                             tf.maximum(self.loss_scale / 2.0, 1.0))
        new_good = tf.where(tf.logical_and(finite, tf.logical_not(grow)), self.good_steps + 1,
                            tf.zeros_like(self.good_steps))
        self.loss_scale.assign(new_scale)
        self.good_steps.assign(new_good)

    def _metric_structure(self, element_spec):
        """The (sum, count) metric dict loss_fn returns, found by tracing it (no execution)."""
        spec = tf.nest.map_structure(
            lambda s: tf.TensorSpec([None] + s.shape[1:].as_list(), s.dtype), element_spec)
        concrete = tf.function(lambda f: self.loss_fn(f, False)[1]).get_concrete_function(spec)
        return tf.nest.map_structure(lambda _: tf.zeros([], tf.float32),
                                     concrete.structured_outputs)

    def _build_train_steps(self, metric_zeros):
        strategy = self.strategy

        def reduce_sum(value):
            return strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)

        @tf.function
        def train_steps(iterator, num_steps):
            losses = tf.TensorArray(tf.float32, size=num_steps)
            metrics = tf.nest.map_structure(tf.identity, metric_zeros)
            for i in tf.range(num_steps):
                loss, step_metrics = strategy.run(self._replica_step, args=(next(iterator),))
                losses = losses.write(i, reduce_sum(loss))
                metrics = _add(metrics, tf.nest.map_structure(
                    lambda m: tf.cast(reduce_sum(m), tf.float32), step_metrics))
            return losses.stack(), metrics

        return train_steps

    # -- checkpoints --------------------------------------------------------------------------

    def _extra_state(self):
        return {
            TRAINING_STATE_PREFIX + "optimizer_iterations": self.optimizer.iterations,
            TRAINING_STATE_PREFIX + "loss_scale": self.loss_scale,
            TRAINING_STATE_PREFIX + "good_steps": self.good_steps,
        }

    def save_checkpoint(self):
        """Write model.ckpt-<global_step> (chief only), then update `checkpoint`, then prune."""
        if not self.is_chief or not self.output_dir:
            return None
        prefix = checkpoint_prefix(self.output_dir, self.global_step)
        named = {}
        named.update(self.model.named_variables())
        named.update(self.optimizer.named_slot_variables())
        named.update(self._extra_state())
        tensors = {name: tf.convert_to_tensor(v) for name, v in named.items()}
        tensors["global_step"] = tf.constant(self.global_step, tf.int64)
        modeling.save_checkpoint(tensors, prefix)
        previous = [p for p in _listed_checkpoints(self.output_dir) if p != prefix]
        keep = previous + [prefix]
        doomed = []
        if self.keep_checkpoint_max and len(keep) > self.keep_checkpoint_max:
            doomed, keep = keep[:-self.keep_checkpoint_max], keep[-self.keep_checkpoint_max:]
        write_checkpoint_state(self.output_dir, prefix, keep)
        for old in doomed:      # deleted only after the state file no longer lists them
            _delete_checkpoint_files(old)
        logging.info("saved checkpoint %s", prefix)
        return prefix

    def restore(self, prefix):
        """Exact resumption from one of our checkpoints: weights, slots, step, loss scale."""
        reader = tf.train.load_checkpoint(prefix)
        stored = reader.get_variable_to_shape_map()
        named = {}
        named.update(self.model.named_variables())
        named.update(self.optimizer.named_slot_variables())
        named.update({k: v for k, v in self._extra_state().items() if k in stored})
        missing = [n for n in named if n not in stored]
        if missing:
            raise AlbertError(
                f"cannot resume from {prefix}: {len(missing)} variables missing (e.g. "
                f"{missing[0]}); was it written with another --optimizer or model? Use a new "
                "--output_dir, or pass it as --init_checkpoint to start a new run from it")
        for name, var in named.items():
            value = reader.get_tensor(name)
            if list(value.shape) != var.shape.as_list():
                raise AlbertError(f"cannot resume from {prefix}: {name} has shape "
                                  f"{list(value.shape)} but the model has {var.shape.as_list()}")
            var.assign(value)
        self.global_step = int(reader.get_tensor("global_step"))
        if TRAINING_STATE_PREFIX + "optimizer_iterations" not in stored:
            self.optimizer.iterations.assign(self.global_step)
        logging.info("resumed from %s at step %d", prefix, self.global_step)

    def restore_or_initialize(self, init_checkpoint=None):
        """Resume from output_dir's latest checkpoint, else load init_checkpoint's weights.

        init_checkpoint may be any released checkpoint of either style; its optimizer slots and
        global_step are ignored (training starts at step 0). Returns the starting step.
        """
        latest = latest_checkpoint(self.output_dir)
        if latest:
            if init_checkpoint:
                logging.info("output_dir has %s: resuming from it, not from --init_checkpoint",
                             latest)
            self.restore(latest)
        elif init_checkpoint:
            report = modeling.load_checkpoint(self.model, init_checkpoint)
            logging.info("initialised %d variables from %s (%d left as initialised: %s)",
                         len(report.loaded), report.path, len(report.missing_allowed),
                         ", ".join(report.missing_allowed[:5]))
        return self.global_step

    # -- logging ------------------------------------------------------------------------------

    def _summary_writer(self):
        if self._writer is None and self.is_chief and self.output_dir:
            self._writer = tf.summary.create_file_writer(self.output_dir)
        return self._writer

    def _log_loop(self, steps, losses, metrics, elapsed, global_batch_size, num_train_steps):
        examples_per_second = steps * global_batch_size / max(elapsed, 1e-9)
        remaining = (num_train_steps - self.global_step) * elapsed / max(steps, 1)
        record = {"step": self.global_step, "loss": float(np.mean(losses)),
                  "last_loss": float(losses[-1]), "examples_per_second": examples_per_second,
                  "learning_rate": float(self.optimizer.current_learning_rate())}
        for name, (total, count) in metrics.items():
            record[name] = float(total) / max(float(count), 1e-12)
        if self.precision == "fp16":
            record["loss_scale"] = float(self.loss_scale.numpy())
        self.history.append(record)
        logging.info("step %d/%d loss %.4f (%s) %.1f examples/s ETA %s", self.global_step,
                     num_train_steps, record["loss"],
                     " ".join(f"{k} {record[k]:.4f}" for k in metrics), examples_per_second,
                     time.strftime("%H:%M:%S", time.gmtime(remaining)))
        writer = self._summary_writer()
        if writer is not None:
            write_scalars(writer, self.global_step,
                          {k: v for k, v in record.items() if k != "step"})
            with open(os.path.join(self.output_dir, "train_log.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")

    # -- training -----------------------------------------------------------------------------

    def distribute(self, dataset_fn):
        """dataset_fn(input_context)'s batches spread over the replicas, ready to iterate.

        One device reads through a plain tf.data iterator: the distributed one wraps the
        device's stream in a dataset of its own, and deleting that dataset's iterator waits
        until its tf.data autotuning thread next wakes up, up to 60 s (TF 2.21; it cost
        every run_classifier.py epoch ~24 s). Other strategies keep TensorFlow's
        distribution, and `train` keeps their iterator from one call to the next.
        """
        if isinstance(self.strategy, tf.distribute.OneDeviceStrategy):
            return dataset_fn(tf.distribute.InputContext(num_replicas_in_sync=1))
        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def make_iterator(self, dataset_fn, start_step=0):
        """Iterator over dataset_fn(input_context, start_step) distributed over the replicas."""
        dataset = self.distribute(functools.partial(dataset_fn, start_step=start_step))
        if self._train_steps is None:
            local = dataset  # one device: already the plain per-replica dataset
            if not isinstance(dataset, tf.data.Dataset):
                local = dataset_fn(tf.distribute.InputContext(
                    num_replicas_in_sync=self.strategy.num_replicas_in_sync))
            self._train_steps = self._build_train_steps(self._metric_structure(local.element_spec))
        return iter(dataset)

    def run_steps(self, iterator, num_steps):
        """Run num_steps training steps in one compiled call; advances global_step.

        Returns (per-step losses as a NumPy array, {metric: (sum, count)} over the steps).
        """
        try:
            losses, metrics = self._train_steps(iterator, tf.constant(num_steps, tf.int32))
        except tf.errors.DataLossError as e:
            raise AlbertError(_corrupt_input_message(e, self.global_step)) from None
        self.global_step += num_steps
        return losses.numpy(), {k: (float(v[0]), float(v[1])) for k, v in metrics.items()}

    def train(self, dataset_fn, num_train_steps, global_batch_size, iterations_per_loop=1000,
              save_checkpoints_steps=1000, after_checkpoint=None):
        """Run from self.global_step to num_train_steps; checkpoint every save_checkpoints_steps.

        dataset_fn(input_context, start_step) must yield the per-replica batches (of
        global_batch_size / num_replicas) of steps start_step, start_step + 1, ... of one
        deterministic stream (make_dataset_fn does); each replica's batch is split into
        gradient_accumulation_steps micro-batches. `after_checkpoint()`, if given, runs
        on every worker after each checkpoint (e.g. an evaluation). Returns self.history.
        """
        replicas = self.strategy.num_replicas_in_sync
        if global_batch_size % (replicas * self.accumulation):
            raise AlbertError(
                f"the global batch {global_batch_size} must be divisible by replicas "
                f"({replicas}) x gradient_accumulation_steps ({self.accumulation})")
        iterations_per_loop = max(1, int(iterations_per_loop))
        save_every = int(save_checkpoints_steps or 0)
        if self.output_dir and self.is_chief:
            tf.io.gfile.makedirs(self.output_dir)

        if self.global_step >= num_train_steps:
            return self.history
        kept, self._kept_input = self._kept_input, None
        if kept and kept[0] is dataset_fn and kept[2] == self.global_step:
            iterator = kept[1]  # the last call read this stream up to here: go on with it
        else:
            kept = None  # an old iterator goes before a new one starts
            iterator = self.make_iterator(dataset_fn, start_step=self.global_step)
        while self.global_step < num_train_steps:
            segment_end = num_train_steps
            if save_every:
                segment_end = min(num_train_steps, (self.global_step // save_every + 1) * save_every)
            while self.global_step < segment_end:
                steps = min(iterations_per_loop, segment_end - self.global_step)
                began = time.time()
                losses, metrics = self.run_steps(iterator, steps)
                elapsed = time.time() - began
                self.step_losses.extend(float(x) for x in losses)
                if not np.all(np.isfinite(losses)) and self.precision != "fp16":
                    raise AlbertError(
                        f"the loss became {losses[-1]} at step {self.global_step}: lower "
                        "--learning_rate or raise --num_warmup_steps")
                self._log_loop(steps, losses, metrics, elapsed, global_batch_size,
                               num_train_steps)
            if save_every or self.global_step >= num_train_steps:
                self.save_checkpoint()
                if after_checkpoint is not None:
                    after_checkpoint()
        # Kept for a next call that goes on from here (run_classifier.py: one per epoch),
        # which saves rebuilding the input and, on several devices, the wait when the
        # distributed iterator is deleted (see `distribute`).
        self._kept_input = (dataset_fn, iterator, self.global_step)
        return self.history

    def release_input(self):
        """Delete the input iterator kept for a next train() call (frees its buffers)."""
        self._kept_input = None

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self, dataset_fn, max_steps=None):
        """Run loss_fn(training=False) over the eval data (all of it, or max_steps batches).

        Returns {metric: sum/count, loss term: sum/weight, "loss": sum of the terms,
        "global_step": step}; sums are taken over every replica and batch before dividing.
        """
        strategy = self.strategy
        if self._eval_step is None:
            def replica_eval(features):
                loss_sums, metrics = self.loss_fn(features, False)
                return loss_sums, self.loss_weights_fn(features), metrics

            @tf.function(reduce_retracing=True)
            def eval_step(batch):
                outputs = strategy.run(replica_eval, args=(batch,))
                return tf.nest.map_structure(
                    lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM,
                                              tf.cast(v, tf.float32), axis=None), outputs)
            self._eval_step = eval_step

        totals = None
        batches = iter(self.distribute(dataset_fn))
        for step in itertools.count():
            if max_steps and step >= max_steps:
                break
            try:
                batch = next(batches)
            except StopIteration:
                break
            except tf.errors.DataLossError as e:
                raise AlbertError(_corrupt_input_message(e, self.global_step)) from None
            values = tf.nest.map_structure(lambda t: t.numpy().astype(np.float64),
                                           self._eval_step(batch))
            totals = values if totals is None else tf.nest.map_structure(np.add, totals, values)
        if totals is None:
            raise AlbertError("the eval data is empty: check the eval input files")
        loss_sums, weights, metrics = totals
        results = {name: float(total / max(count, 1e-12))
                   for name, (total, count) in metrics.items()}
        terms = {t: float(loss_sums[t] / (weights[t] + LOSS_NORMALIZER_EPSILON))
                 for t in loss_sums}
        results.update(terms)
        results["loss"] = float(sum(terms.values()))
        results["global_step"] = self.global_step
        writer = self._summary_writer()
        if writer is not None:
            eval_writer = tf.summary.create_file_writer(os.path.join(self.output_dir, "eval"))
            write_scalars(eval_writer, self.global_step,
                          {k: v for k, v in results.items() if k != "global_step"})
        return results


def _corrupt_input_message(error, step):
    return (f"corrupt input data at step {step} ({modeling._first_line(error)}): a TFRecord "
            "file is damaged or truncated; regenerate it or leave it out of the input list")


def write_eval_results(path, results, header=None):
    """`key = value` lines, sorted, as the originals' eval_results.txt (chief writes it)."""
    lines = [header] if header else []
    lines += [f"{key} = {results[key]}" for key in sorted(results)]
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    for line in lines:
        logging.info("  %s", line)
