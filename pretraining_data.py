"""Pretraining input: the TFRecords of create_pretraining_data.py, read by run_pretraining.py.

* `expand_input_files`: comma lists and globs of files, the one expansion every script uses
  (create_pretraining_data.py for its text files too). A glob never picks up the generator's
  own `*.summary.json` files.
* `pretraining_feature_spec` / `check_tfrecord_schema`: the record layout (docs/formats.md,
  "Pretraining TFRecords") and a readable error naming file, feature and flag when a file
  does not fit it; `check_token_ids`: an id the model's vocabulary does not have, named with
  its file before training starts.
* `find_damaged_file`: which file a DataLossError came from (TensorFlow does not say).
* `make_dataset_fn`: the tf.data pipeline for tf.distribute (file shuffle, interleave, shuffle
  buffer, int64 -> int32, per-replica batches, one shard per input pipeline, deterministic
  given a seed, resumable at any step).

TensorFlow is imported inside the functions that use it: create_pretraining_data.py's spawned
workers import this module for the file list and must not pay for loading TensorFlow.
"""

import glob
import os
import re

import numpy as np
from absl import logging

from errors import AlbertError, first_line

GENERATOR_SUMMARY_SUFFIX = ".summary.json"  # written beside its output by the generator

# Which flag sets the length of each feature (named in schema errors).
FLAG_FOR_FEATURE = {
    "input_ids": "max_seq_length",
    "input_mask": "max_seq_length",
    "segment_ids": "max_seq_length",
    "masked_lm_positions": "max_predictions_per_seq",
    "masked_lm_ids": "max_predictions_per_seq",
    "masked_lm_weights": "max_predictions_per_seq",
}


def expand_input_files(patterns, flag_name="input_file"):
    """Comma-separated files or globs -> files in the given order (globs sorted).

    A glob skips directories and the generator's `*.summary.json` files (logged); a plain
    path must be an existing file. Cloud paths (gs://...) are globbed with tf.io.gfile.
    """
    files = []
    for pattern in (p.strip() for p in str(patterns or "").split(",")):
        if not pattern:
            continue
        if glob.has_magic(pattern):
            if "://" in pattern:
                import tensorflow as tf

                matches = sorted(tf.io.gfile.glob(pattern))
            else:
                matches = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
            summaries = [m for m in matches if m.endswith(GENERATOR_SUMMARY_SUFFIX)]
            if summaries:
                logging.info(
                    "--%s: %s matches %d generator summary file(s), left out: %s",
                    flag_name,
                    pattern,
                    len(summaries),
                    summaries[0],
                )
            matches = [m for m in matches if not m.endswith(GENERATOR_SUMMARY_SUFFIX)]
            if not matches:
                raise AlbertError(
                    f"--{flag_name}: no file matches {pattern!r}; check the path "
                    "(comma-separated files and globs are accepted)"
                )
            files.extend(matches)
        elif "://" in pattern:
            files.append(pattern)
        elif os.path.isdir(pattern):
            raise AlbertError(
                f"--{flag_name}: {pattern} is a directory; give files or a glob "
                f"such as {os.path.join(pattern, '*')}"
            )
        elif not os.path.isfile(pattern):
            raise AlbertError(f"--{flag_name}: file not found: {pattern}")
        else:
            files.append(pattern)
    if not files:
        raise AlbertError(f"--{flag_name} is empty: give a comma list of files or globs")
    return files


def pretraining_feature_spec(max_seq_length, max_predictions_per_seq):
    """The schema of the pretraining TFRecords (both generators; docs/formats.md)."""
    import tensorflow as tf

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
    import tensorflow as tf

    flag_for_feature = flag_for_feature or {}
    try:
        first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except tf.errors.OpError as e:
        raise AlbertError(f"{path} is not a readable TFRecord file ({first_line(e)})") from None
    if first is None:
        raise AlbertError(f"{path} holds no records; regenerate it or drop it from the list")
    try:
        example = tf.train.Example.FromString(first.numpy())
    except Exception:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise AlbertError(f"{path}: the first record is not a tf.train.Example") from None
    features = example.features.feature
    for name, spec in name_to_features.items():
        if name not in features:
            raise AlbertError(
                f"{path}: record 0 has no feature {name!r} (it has "
                f"{', '.join(sorted(features))}); was it written for another task?"
            )
        kind = features[name].WhichOneof("kind")
        values = getattr(features[name], kind).value if kind else []
        expected = int(np.prod(spec.shape)) if spec.shape else 1
        if len(values) != expected:
            hint = flag_for_feature.get(name)
            fix = (
                f"pass --{hint}={len(values)} (the value the data was generated with)"
                if hint
                else "regenerate the data with matching lengths"
            )
            raise AlbertError(
                f"{path}: feature {name!r} has length {len(values)} but "
                f"{expected} is expected; {fix}"
            )


def check_token_ids(path, vocab_size, num_records=50):
    """AlbertError naming `path` if one of its first records has an id >= vocab_size.

    Such data was made with a larger vocab.txt than the model's. On a CPU the embedding
    lookup fails with a traceback mid-training; on a GPU it silently reads zeros.
    """
    import tensorflow as tf

    try:
        records = [r.numpy() for r in tf.data.TFRecordDataset(path).take(num_records)]
    except tf.errors.OpError as e:
        raise AlbertError(
            f"corrupt input data in {path} ({_record_error(e)}): the file is damaged or "
            "truncated; regenerate it or leave it out of the input list"
        ) from None
    for index, record in enumerate(records):
        features = tf.train.Example.FromString(record).features.feature
        for name in ("input_ids", "masked_lm_ids"):
            values = features[name].int64_list.value if name in features else []
            if values and max(values) >= vocab_size:
                raise AlbertError(
                    f"{path}: record {index} has {name} {max(values)} but the config's "
                    f"vocab_size is {vocab_size}: the data was made with another (larger) "
                    "vocab.txt; regenerate it with the model's vocab or use the matching config"
                )


def find_damaged_file(files, error=None):
    """'<file> (<reason>)' for the first of `files` that cannot be read to its end, or None.

    TensorFlow's DataLossError says "corrupted record at <byte offset>" but not in which
    file; only files longer than that offset are read again (records counted, not parsed).
    """
    import tensorflow as tf

    match = re.search(r"(corrupted|truncated) record at (\d+)", str(error or ""))
    offset = int(match.group(2)) if match else 0
    for path in files:
        try:
            if offset and tf.io.gfile.stat(path).length <= offset:
                continue
            tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda count, _: count + 1)
        except tf.errors.OpError as e:
            return f"{path} ({_record_error(e)})"
    return None


def _record_error(error):
    """ "corrupted record at 5481" out of TensorFlow's long DataLossError message."""
    reason = re.search(r"(corrupted|truncated) record at \d+", str(error))
    return reason.group(0) if reason else first_line(error)


def decode_record(record, name_to_features):
    """Parse one serialized Example; int64 -> int32 (what the model and TPUs want)."""
    import tensorflow as tf

    example = tf.io.parse_single_example(record, name_to_features)
    return {name: tf.cast(t, tf.int32) if t.dtype == tf.int64 else t for name, t in example.items()}


def make_dataset_fn(
    files,
    name_to_features,
    global_batch_size,
    is_training,
    shuffle_buffer=100,
    cycle_length=4,
    drop_remainder=None,
    seed=12345,
):
    """A `dataset_fn(input_context=None, start_step=0)` for distribute_datasets_from_function.

    Training: shuffle files (reshuffled each epoch) -> repeat -> interleave `cycle_length` files
    -> shuffle(`shuffle_buffer`) -> skip what steps < start_step read -> parse -> batch
    (per-replica batch, drop_remainder). One endless stream, deterministic given the seed.
    Eval: the files in order, once, not shuffled (drop_remainder defaults to False so no
    example is lost).
    Each input pipeline (one per worker) reads its own shard: whole files if there are enough,
    else every n-th record. The batch is the per-replica batch = global / replicas.
    """
    import tensorflow as tf

    files = list(files)
    if drop_remainder is None:
        drop_remainder = is_training

    def dataset_fn(input_context=None, start_step=0):
        batch_size = (
            input_context.get_per_replica_batch_size(global_batch_size)
            if input_context
            else global_batch_size
        )
        num_pipelines = input_context.num_input_pipelines if input_context else 1
        pipeline_id = input_context.input_pipeline_id if input_context else 0
        replicas_per_pipeline = (
            input_context.num_replicas_in_sync // num_pipelines if input_context else 1
        )
        shard_files = num_pipelines > 1 and len(files) >= num_pipelines

        dataset = tf.data.Dataset.from_tensor_slices(tf.constant(files))
        if shard_files:
            dataset = dataset.shard(num_pipelines, pipeline_id)
        if is_training:
            dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
            dataset = dataset.repeat()
            dataset = dataset.interleave(
                tf.data.TFRecordDataset,
                cycle_length=min(cycle_length, len(files)),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
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
            logging.info(
                "input pipeline %d resumes at step %d: skipping the %d records it already read",
                pipeline_id,
                start_step,
                records,
            )
            dataset = dataset.skip(records)
        dataset = dataset.map(
            lambda r: decode_record(r, name_to_features),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        return dataset.prefetch(tf.data.AUTOTUNE)

    dataset_fn.find_damaged_file = lambda error=None: find_damaged_file(files, error)
    return dataset_fn
