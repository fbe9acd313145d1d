"""Shared training machinery for run_pretraining.py and run_classifier.py, on tf.distribute.

The original scripts train through TPUEstimator (TF 1.x). This module is its TF2 replacement,
one place for:

1. Strategy from flags: `create_strategy("auto" | "one_device" | "mirrored" | "multi_worker" |
   "tpu", ...)`. auto = TPU if --use_tpu, multi-worker if TF_CONFIG names several tasks,
   mirrored if there are several GPUs, else one device.
2. Precision: `compute_dtype("fp32" | "bf16" | "fp16")` for `model.set_compute_dtype`; fp16 gets
   dynamic loss scaling inside the `Trainer`. The model skips padding in training (see
   modeling.AlbertModel) except under XLA or on a TPU, where the Trainer turns it off.
3. Flags: `define_training_flags` defines the flags every training script shares
   (run_pretraining.py, run_classifier.py, run_ner.py), once.
4. The loop, `Trainer.train`: `iterations_per_loop` steps run inside ONE tf.function
   (a `tf.range` loop calling `strategy.run` per step), then the host logs, writes TensorBoard
   summaries and checkpoints, as TPUEstimator does. A step = k micro-batches of gradient
   accumulation, one all-reduce (sum) of the gradients, one optimizer update. On a machine
   where such a call would run for minutes (1000 steps on a CPU), it is split into calls of
   about TARGET_CALL_SECONDS, so that progress (step, rate, ETA) is logged at least every
   PROGRESS_SECONDS; the steps, their order and so the weights are the same.
5. Checkpoints (files and policy in checkpoints.py): `output_dir/model.ckpt-<step>` holds the
   model variables under their original names, the optimizer slots (`<name>/adam_m` ...),
   `global_step` and the few extra things exact resumption needs under `training_state/...`
   (skipped by checkpoints.load_checkpoint). Resuming reads the newest checkpoint whole before
   trusting it and falls back to the one before when it is damaged; a run never starts over
   in an output_dir that holds checkpoints unless `overwrite_output_dir` says so.
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
The three tasks' losses in this contract live here too: `pretraining_losses`,
`classifier_losses` and `token_classifier_losses`, each -> (loss_fn, loss_weights_fn or None).

Input position for exact resumption: the training stream is ONE deterministic stream (fixed
seed) read from start to end by an uninterrupted run; checkpoints do not touch it. A run that
resumes at step s asks `dataset_fn(input_context, start_step=s)` for the same stream advanced by
s steps (make_dataset_fn skips the records already read, before parsing them), so a resumed run
and an uninterrupted one read identical batches. No iterator state is stored (tf.distribute's
iterators cannot be checkpointed), only global_step. Within a process, a train() call that goes
on from where the last one stopped, with the same dataset_fn, keeps reading its iterator.
"""

import functools
import itertools
import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

import checkpoints
import optimization
import tokenization
from errors import AlbertError, check_output_path, first_line

PRECISIONS = {"fp32": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
LOSS_NORMALIZER_EPSILON = 1e-5  # the originals' masked-LM denominator: sum(w) + 1e-5
TARGET_CALL_SECONDS = 20.0  # a compiled call of several steps is sized to last about this
PROGRESS_SECONDS = 30.0  # a progress line at least this often while a host loop runs
TRAINING_STATE_PREFIX = checkpoints.TRAINING_STATE_PREFIX


# ----------------------------------------------------------------------------------------------
# Strategy and precision.
# ----------------------------------------------------------------------------------------------


def tf_config_task_count():
    """Number of tasks (chief + workers) that TF_CONFIG describes (0 without TF_CONFIG)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as e:
        raise AlbertError(f"TF_CONFIG is not valid JSON ({e}); unset it or fix it") from None
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def create_strategy(strategy="auto", use_tpu=False, tpu_name=None, tpu_zone=None, gcp_project=None):
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
        elif tf_config_task_count() > 1:
            strategy = "multi_worker"
        elif len(gpus) > 1:
            strategy = "mirrored"
        else:
            strategy = "one_device"
    if use_tpu and strategy != "tpu":
        raise AlbertError(f"--use_tpu contradicts --strategy={strategy}; drop one of them")

    if strategy == "tpu":
        if not tpu_name:
            raise AlbertError(
                "--use_tpu / --strategy=tpu needs --tpu_name (the TPU's name or grpc:// address)"
            )
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=tpu_name, zone=tpu_zone, project=gcp_project
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        result = tf.distribute.TPUStrategy(resolver)
    elif strategy == "multi_worker":
        if tf_config_task_count() < 1:
            raise AlbertError(
                "--strategy=multi_worker needs TF_CONFIG describing the cluster "
                '(e.g. {"cluster": {"worker": [...]}, "task": {...}})'
            )
        result = tf.distribute.MultiWorkerMirroredStrategy()
    elif strategy == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        # Without GPUs, mirror over the logical CPU devices (tests configure several).
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        result = tf.distribute.MirroredStrategy(devices=devices)
    else:
        gpus = tf.config.list_logical_devices("GPU")
        result = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    logging.info(
        "strategy %s with %d replica(s)", type(result).__name__, result.num_replicas_in_sync
    )
    return result


def define_training_flags(flag_values, keep_checkpoint_max=5, optimizer="adamw"):
    """The flags every training script shares (the originals' names first), defined once.

    Script-specific flags (data, task, schedule) stay in the script. Defaults that differ
    between scripts are arguments: albert_zh's pretraining kept 20 checkpoints and used LAMB.
    """
    from absl import flags

    fv = flag_values
    checkpoints.define_model_flags(
        fv,
        "Checkpoint to start from: a released albert_zh checkpoint (either style), a "
        "run_pretraining.py output directory or a fine-tuned model. Its optimizer slots and "
        "global_step are ignored.",
    )
    flags.DEFINE_string(
        "output_dir", None, "Where checkpoints, logs and results go.", flag_values=fv
    )
    flags.DEFINE_integer(
        "max_seq_length", 128, "Maximum tokens per sequence, [CLS]/[SEP] included.", flag_values=fv
    )
    flags.DEFINE_bool("do_train", False, "Train.", flag_values=fv)
    flags.DEFINE_bool(
        "do_eval",
        False,
        "Evaluate (with --do_train: at every checkpoint or epoch end too).",
        flag_values=fv,
    )
    flags.DEFINE_integer("train_batch_size", 32, "Global training batch size.", flag_values=fv)
    flags.DEFINE_integer("eval_batch_size", 8, "Global eval batch size.", flag_values=fv)
    flags.DEFINE_float("learning_rate", 5e-5, "Peak learning rate.", flag_values=fv)
    flags.DEFINE_integer(
        "save_checkpoints_steps", 1000, "Checkpoint every this many steps.", flag_values=fv
    )
    flags.DEFINE_integer(
        "iterations_per_loop",
        1000,
        "Steps per compiled device loop (the log and TensorBoard interval).",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "keep_checkpoint_max",
        keep_checkpoint_max,
        "Step checkpoints kept (0 = all).",
        flag_values=fv,
    )
    flags.DEFINE_enum("optimizer", optimizer, ["adamw", "lamb"], "Optimizer.", flag_values=fv)
    flags.DEFINE_integer(
        "seed", 12345, "Seed of initialisation, data order and dropout.", flag_values=fv
    )
    flags.DEFINE_bool(
        "overwrite_output_dir",
        False,
        "Start over in an --output_dir whose checkpoints cannot be resumed (they are deleted).",
        flag_values=fv,
    )
    # Strategy, precision and the TPU flags of the originals.
    flags.DEFINE_enum(
        "strategy", "auto", list(STRATEGIES), "tf.distribute strategy.", flag_values=fv
    )
    flags.DEFINE_enum(
        "precision",
        "fp32",
        list(PRECISIONS),
        "Compute dtype: bf16 on CPU/TPU, fp16 (with loss scaling) on GPU.",
        flag_values=fv,
    )
    flags.DEFINE_bool("use_xla", False, "XLA-compile the forward/backward pass.", flag_values=fv)
    flags.DEFINE_integer(
        "gradient_accumulation_steps",
        1,
        "Split each replica's batch into this many micro-batches (same result, less memory).",
        flag_values=fv,
    )
    flags.DEFINE_bool(
        "use_tpu", False, "Train on a TPU (TPUClusterResolver + TPUStrategy).", flag_values=fv
    )
    flags.DEFINE_string("tpu_name", None, "TPU name or grpc:// address.", flag_values=fv)
    flags.DEFINE_string("tpu_zone", None, "GCE zone of the TPU (optional).", flag_values=fv)
    flags.DEFINE_string("gcp_project", None, "GCP project of the TPU (optional).", flag_values=fv)
    flags.DEFINE_string(
        "master", None, "Accepted for compatibility with the originals; unused.", flag_values=fv
    )
    flags.DEFINE_integer(
        "num_tpu_cores",
        8,
        "Accepted for compatibility; TPUStrategy uses every core it finds.",
        flag_values=fv,
    )


def define_fine_tuning_flags(flag_values):
    """The flags of the fine-tuning scripts (run_classifier.py, run_ner.py) on top of
    `define_training_flags`: data files, tokenizer, schedule in epochs, dropout, padding."""
    from absl import flags

    fv = flag_values
    define_training_flags(fv, keep_checkpoint_max=5, optimizer="adamw")
    flags.DEFINE_string(
        "data_dir", None, "Directory with the task's train/dev/test files.", flag_values=fv
    )
    for split in ("train", "dev", "test"):
        flags.DEFINE_string(
            f"{split}_file",
            None,
            f"{split.capitalize()} file (default: the task's name in data_dir).",
            flag_values=fv,
        )
    flags.DEFINE_string(
        "vocab_file",
        None,
        "The vocab.txt of the model (default: the one in --init_checkpoint's directory).",
        flag_values=fv,
    )
    flags.DEFINE_bool(
        "do_lower_case",
        True,
        "Lower-case the input (True for the Chinese models; default: what a Hugging Face "
        "--init_checkpoint's tokenizer_config.json says).",
        flag_values=fv,
    )
    flags.DEFINE_bool(
        "do_predict", False, "Predict the test split (scored too when labelled).", flag_values=fv
    )
    flags.DEFINE_integer("predict_batch_size", 8, "Prediction batch size.", flag_values=fv)
    flags.DEFINE_float(
        "num_train_epochs", 3.0, "Training epochs (may be fractional).", flag_values=fv
    )
    flags.DEFINE_float(
        "warmup_proportion", 0.1, "Fraction of the steps with linear warmup.", flag_values=fv
    )
    flags.DEFINE_integer(
        "num_train_steps", None, "Train this many steps instead of epochs.", flag_values=fv
    )
    flags.DEFINE_float(
        "weight_decay_rate", 0.01, "Decoupled weight decay (not LayerNorm/bias).", flag_values=fv
    )
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        flags.DEFINE_float(name, None, f"Override the config's {name}.", flag_values=fv)
    flags.DEFINE_float(
        "classifier_dropout",
        0.1,
        "Dropout before the output layer (the original: 0.1).",
        flag_values=fv,
    )
    flags.DEFINE_bool(
        "fixed_length", False, "Pad every batch to max_seq_length (static shapes).", flag_values=fv
    )
    flags.DEFINE_bool(
        "strict",
        False,
        "Stop at the first malformed data row instead of skipping it.",
        flag_values=fv,
    )
    flags.DEFINE_bool(
        "eval_every_epoch",
        True,
        "With do_train+do_eval, evaluate after each epoch.",
        flag_values=fv,
    )


def fine_tuning_config(fv):
    """The model config of a fine-tuning run, with every flag it depends on settled.

    --vocab_file and --do_lower_case default to what --init_checkpoint's directory holds (an
    HF directory's vocab.txt and tokenizer_config.json, or a model directory's copies); the
    dropout flags override the config; max_seq_length and the vocab size are checked.
    """
    config = checkpoints.config_from_flags(fv)
    found = checkpoints.tokenizer_files(fv.init_checkpoint)
    if not fv.vocab_file:
        if not found.vocab_file:
            raise AlbertError(
                "--vocab_file is required (--init_checkpoint is not a directory with a vocab.txt)"
            )
        fv.vocab_file = found.vocab_file
        logging.info("vocab: %s (from --init_checkpoint's directory)", fv.vocab_file)
    if found.do_lower_case is not None and not fv["do_lower_case"].present:
        fv.do_lower_case = found.do_lower_case
    overrides = {
        key: fv[key].value
        for key in ("hidden_dropout_prob", "attention_probs_dropout_prob")
        if fv[key].value is not None
    }
    if overrides:
        config = config.replace(**overrides)
    config.check_max_seq_length(fv.max_seq_length)
    tokenization.check_vocab_size(fv.vocab_file, config.vocab_size)
    if fv.predict_batch_size <= 0:
        raise AlbertError(f"--predict_batch_size must be positive, got {fv.predict_batch_size}")
    if not 0.0 <= fv.warmup_proportion < 1.0:
        raise AlbertError("--warmup_proportion must be in [0, 1)")
    if fv.use_tpu and not fv.fixed_length:
        logging.info("--use_tpu: padding every batch to --max_seq_length (static shapes)")
        fv.fixed_length = True
    for name in ("train_file", "dev_file", "test_file"):
        path = fv[name].value
        if path and not os.path.isfile(path):
            raise AlbertError(f"--{name}={path} does not exist")
    return config


def check_training_flags(fv):
    """The checks every training script needs, each a one-line AlbertError."""
    if not fv.output_dir:
        raise AlbertError("--output_dir is required")
    check_output_path(fv.output_dir, "output_dir", directory=True)
    for name in (
        "train_batch_size",
        "eval_batch_size",
        "max_seq_length",
        "iterations_per_loop",
        "gradient_accumulation_steps",
    ):
        if fv[name].value <= 0:
            raise AlbertError(f"--{name} must be positive, got {fv[name].value}")
    if fv.save_checkpoints_steps < 0 or fv.keep_checkpoint_max < 0:
        raise AlbertError("--save_checkpoints_steps and --keep_checkpoint_max must be >= 0")
    if not fv.learning_rate >= 0:  # also catches nan
        raise AlbertError(f"--learning_rate must be positive, got {fv.learning_rate}")
    if fv.learning_rate == 0 and fv.do_train:
        logging.warning("--learning_rate=0: training will not change the weights")
    if fv.precision == "fp16" and not tf.config.list_physical_devices("GPU"):
        logging.warning("--precision=fp16 without a GPU is slow; bf16 is the CPU/TPU choice")


def trainer_from_flags(fv, strategy, model, optimizer, loss_fn, loss_weights_fn=None):
    """A Trainer configured by the shared training flags, resumed from --output_dir's newest
    readable checkpoint, else initialised from --init_checkpoint (if any)."""
    trainer = Trainer(
        strategy,
        model,
        optimizer,
        loss_fn,
        fv.output_dir,
        loss_weights_fn=loss_weights_fn,
        precision=fv.precision,
        use_xla=fv.use_xla,
        gradient_accumulation_steps=fv.gradient_accumulation_steps,
        keep_checkpoint_max=fv.keep_checkpoint_max,
        overwrite_output_dir=fv.overwrite_output_dir,
    )
    trainer.restore_or_initialize(fv.init_checkpoint)
    return trainer


def epoch_end_steps(num_train_steps, steps_per_epoch):
    """The global steps that end an epoch (rounded), and the last step: where dev is evaluated."""
    ends = []
    epoch = 1
    while round(epoch * steps_per_epoch) < num_train_steps:
        ends.append(int(round(epoch * steps_per_epoch)))
        epoch += 1
    return ends + [num_train_steps]


def fine_tune(
    fv,
    strategy,
    model,
    loss_fns,
    train_input,
    evaluate_dev,
    learning_rate_multipliers=None,
    evaluated_step=None,
    what="examples",
):
    """The fine-tuning run of run_classifier.py and run_ner.py: schedule, optimizer, Trainer
    (resumed or initialised), then one train() call per epoch with evaluate_dev(step) after it.

    loss_fns: (loss_fn, loss_weights_fn or None) of the loss contract above.
    train_input: the task's data (classifier_data.TrainingInput): len(), batches_per_epoch(
    per_replica_batch) and dataset_fn(num_train_steps), one deterministic stream.
    evaluated_step: the last step an earlier run of this output_dir evaluated (a run killed
    between an epoch's checkpoint and its evaluation evaluates it when resumed).
    Returns the Trainer.
    """
    replicas = strategy.num_replicas_in_sync
    if fv.train_batch_size % replicas:
        raise AlbertError(
            f"--train_batch_size={fv.train_batch_size} must be divisible by the {replicas} replicas"
        )
    steps_per_epoch = train_input.batches_per_epoch(fv.train_batch_size // replicas) / replicas
    num_train_steps = fv.num_train_steps or int(steps_per_epoch * fv.num_train_epochs)
    if num_train_steps <= 0:
        raise AlbertError(
            f"no training steps: {len(train_input)} {what}, batch {fv.train_batch_size}, "
            f"{fv.num_train_epochs} epochs; raise --num_train_epochs or --num_train_steps"
        )
    num_warmup_steps = int(num_train_steps * fv.warmup_proportion)
    with strategy.scope():
        optimizer = optimization.create_optimizer(
            fv.learning_rate,
            num_train_steps,
            num_warmup_steps,
            optimizer=fv.optimizer,
            style=model.style,
            weight_decay_rate=fv.weight_decay_rate,
            learning_rate_multipliers=learning_rate_multipliers or {},
        )
        optimizer.build(model.named_variables())
    loss_fn, loss_weights_fn = loss_fns
    trainer = trainer_from_flags(fv, strategy, model, optimizer, loss_fn, loss_weights_fn)
    if not fv.init_checkpoint and trainer.global_step == 0:
        logging.warning(
            "\n%s\nNO --init_checkpoint: fine-tuning from RANDOM weights (from scratch).\n"
            "Results will be far below a pretrained model's. Pass a released albert_zh\n"
            "checkpoint, a run_pretraining.py output directory or a Hugging Face directory.\n%s",
            "!" * 72,
            "!" * 72,
        )
    logging.info(
        "fine-tuning a %s-style model: %d %s, %.1f steps/epoch, steps %d -> %d (warmup %d), "
        "batch %d on %d replica(s), %s padding",
        model.style,
        len(train_input),
        what,
        steps_per_epoch,
        trainer.global_step,
        num_train_steps,
        num_warmup_steps,
        fv.train_batch_size,
        replicas,
        "fixed" if fv.fixed_length else "dynamic (length-bucketed)",
    )
    dataset_fn = train_input.dataset_fn(num_train_steps)
    end_steps = [num_train_steps]
    if fv.do_eval and fv.eval_every_epoch:
        end_steps = epoch_end_steps(num_train_steps, steps_per_epoch)
    if trainer.global_step in end_steps and (evaluated_step or 0) < trainer.global_step:
        # An earlier run was killed between this epoch's checkpoint and its evaluation:
        # evaluate now, as an uninterrupted run did (model.ckpt-best depends on it).
        evaluate_dev(trainer.global_step)
    for end_step in end_steps:
        if end_step <= trainer.global_step:
            continue
        start = time.time()
        trainer.train(
            dataset_fn,
            end_step,
            fv.train_batch_size,
            iterations_per_loop=fv.iterations_per_loop,
            save_checkpoints_steps=fv.save_checkpoints_steps,
        )
        logging.info(
            "reached step %d/%d (epoch %.2f) in %.1fs",
            trainer.global_step,
            num_train_steps,
            trainer.global_step / steps_per_epoch,
            time.time() - start,
        )
        evaluate_dev(trainer.global_step)
    trainer.release_input()
    return trainer


def strategy_from_flags(fv):
    """create_strategy with the flags' values (call before any other TensorFlow op)."""
    strategy = create_strategy(fv.strategy, fv.use_tpu, fv.tpu_name, fv.tpu_zone, fv.gcp_project)
    if fv.use_tpu and strategy.num_replicas_in_sync != fv.num_tpu_cores:
        logging.warning(
            "--num_tpu_cores=%d but the TPU has %d cores; using all of them",
            fv.num_tpu_cores,
            strategy.num_replicas_in_sync,
        )
    return strategy


def compute_dtype(precision):
    """tf dtype for --precision (fp32 | bf16 | fp16): pass it to model.set_compute_dtype."""
    if precision not in PRECISIONS:
        raise AlbertError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


def is_chief(strategy):
    """True on the one task that writes checkpoints, logs and summaries."""
    return bool(strategy.extended.should_checkpoint)


# ----------------------------------------------------------------------------------------------
# The three tasks' losses, in the loss contract above: (loss_fn, loss_weights_fn or None).
# ----------------------------------------------------------------------------------------------


def pretraining_losses(model):
    """Masked LM + sentence order (modeling.AlbertForPretraining); the masked-LM term is
    weighted by its masked_lm_weights, the sentence-order term by the batch size."""

    def loss_fn(features, training):
        outputs = model(
            features["input_ids"],
            features["input_mask"],
            features["segment_ids"],
            features["masked_lm_positions"],
            training=training,
        )
        logits = outputs["masked_lm_logits"]  # [B, P, V]
        label_ids = features["masked_lm_ids"]
        label_weights = tf.cast(features["masked_lm_weights"], tf.float32)
        # -log_softmax(logits)[label] in one fused op: gathering from log-probabilities would
        # scatter the gradient back into a dense [B, P, V] tensor.
        per_position_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=label_ids, logits=logits
        )  # [B, P]
        mlm_correct = tf.cast(
            tf.equal(tf.argmax(logits, -1, output_type=tf.int32), label_ids), tf.float32
        )

        sop_logits = outputs["sentence_order_logits"]  # [B, 2]
        sop_labels = tf.reshape(features["next_sentence_labels"], [-1])
        sop_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=sop_labels, logits=sop_logits
        )
        sop_correct = tf.cast(
            tf.equal(tf.argmax(sop_logits, -1, output_type=tf.int32), sop_labels), tf.float32
        )
        num_examples = tf.cast(tf.shape(sop_labels)[0], tf.float32)
        loss_sums = {
            "masked_lm_loss": tf.reduce_sum(label_weights * per_position_loss),
            "sentence_order_loss": tf.reduce_sum(sop_loss),
        }
        metrics = {
            "masked_lm_accuracy": (
                tf.reduce_sum(label_weights * mlm_correct),
                tf.reduce_sum(label_weights),
            ),
            "sentence_order_accuracy": (tf.reduce_sum(sop_correct), num_examples),
        }
        return loss_sums, metrics

    def loss_weights_fn(features):
        return {
            "masked_lm_loss": tf.reduce_sum(tf.cast(features["masked_lm_weights"], tf.float32)),
            "sentence_order_loss": tf.cast(tf.shape(features["input_ids"])[0], tf.float32),
        }

    return loss_fn, loss_weights_fn


def classifier_losses(model):
    """Sequence classification (modeling.AlbertForClassification): summed cross-entropy,
    weighted by the batch size (the default), and (correct, count) accuracy."""

    def loss_fn(features, training):
        logits = model(
            features["input_ids"], features["input_mask"], features["segment_ids"], training
        )
        labels = features["label_ids"]
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        correct = tf.reduce_sum(
            tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
        )
        count = tf.cast(tf.shape(labels)[0], tf.float32)
        return {"loss": tf.reduce_sum(per_example)}, {"accuracy": (correct, count)}

    return loss_fn, None


def token_classifier_losses(model):
    """Token classification (modeling.AlbertForTokenClassification), summed over the batch and
    divided by its weight over the whole global batch: softmax, token cross-entropy summed
    over label_mask, weight = the number of labelled tokens; CRF, the sequences' negative
    log-likelihoods summed, weight = the number of sequences with a label. The metric is the
    argmax token accuracy on labelled tokens (for a CRF, of its emission scores: decoding is
    left to evaluation)."""

    def loss_fn(features, training):
        logits = model(
            features["input_ids"], features["input_mask"], features["segment_ids"], training
        )
        label_ids, label_mask = features["label_ids"], features["label_mask"]
        loss_sum = model.loss_sum(logits, label_ids, label_mask)
        mask = tf.cast(label_mask, tf.float32)
        predicted = tf.argmax(logits, -1, output_type=tf.int32)
        correct = tf.reduce_sum(tf.cast(tf.equal(predicted, label_ids), tf.float32) * mask)
        return {"loss": loss_sum}, {"token_accuracy": (correct, tf.reduce_sum(mask))}

    def loss_weights_fn(features):
        return {"loss": model.loss_weight(features["label_mask"])}

    return loss_fn, loss_weights_fn


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

    def __init__(
        self,
        strategy,
        model,
        optimizer,
        loss_fn,
        output_dir,
        loss_weights_fn=None,
        precision="fp32",
        use_xla=False,
        gradient_accumulation_steps=1,
        keep_checkpoint_max=5,
        init_loss_scale=2.0**15,
        loss_scale_period=2000,
        overwrite_output_dir=False,
    ):
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
            raise AlbertError(
                f"--gradient_accumulation_steps must be >= 1, got {gradient_accumulation_steps}"
            )
        self.keep_checkpoint_max = keep_checkpoint_max
        self.overwrite_output_dir = bool(overwrite_output_dir)
        self._skipped_checkpoints = []  # why restore_latest passed over each damaged one
        self.is_chief = is_chief(strategy)
        self.global_step = 0  # steps run (host side; written as `global_step`)
        self.history = []  # one dict per host loop: step, loss, step_losses, examples/s, ...
        self.loss_scale_period = int(loss_scale_period)
        model.set_compute_dtype(compute_dtype(precision))
        if self.use_xla or isinstance(strategy, tf.distribute.TPUStrategy):
            # Skipping padding makes data-dependent shapes, which XLA (so TPUs) cannot compile.
            model.set_skip_padding(False)

        self._names = list(model.named_variables())
        self._variables = [model.named_variables()[n] for n in self._names]
        with strategy.scope():
            # fp16 dynamic loss scaling state; every replica computes the same values, so
            # ONLY_FIRST_REPLICA lets the replica step assign them directly.
            on_first = dict(
                trainable=False,
                synchronization=tf.VariableSynchronization.ON_WRITE,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            self.loss_scale = tf.Variable(
                init_loss_scale if precision == "fp16" else 1.0,
                dtype=tf.float32,
                name="loss_scale",
                **on_first,
            )
            self.good_steps = tf.Variable(0, dtype=tf.int64, name="good_steps", **on_first)
        self._compute = tf.function(
            self._compute_gradients, jit_compile=self.use_xla, reduce_retracing=True
        )
        self._train_steps = None
        self._kept_input = None  # (dataset_fn, its iterator, the step it stands at)
        # Steps per compiled call: 1 for the first two calls (the first one compiles, the
        # second one times a step), then sized to TARGET_CALL_SECONDS. Several workers must
        # make the same calls, and their timings differ: they keep iterations_per_loop.
        self._adapt_calls = not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        self._calls = 0
        self._steps_per_call = None
        self._step_seconds = None  # measured time of one step, once known
        self._last_progress = time.time()
        self._find_damaged_input = None  # dataset_fn's find_damaged_file, if it has one
        self.skipped_checkpoints = []  # (prefix, why) of the damaged ones restore_latest skipped
        self._eval_step = None
        self._writer = None

    # -- the replica step -------------------------------------------------------------------

    def _objective(self, features, totals, training):
        loss_sums, metrics = self.loss_fn(features, training)
        loss = tf.add_n(
            [
                tf.cast(loss_sums[t], tf.float32) / (totals[t] + LOSS_NORMALIZER_EPSILON)
                for t in sorted(loss_sums)
            ]
        )
        return loss, metrics

    def _compute_gradients(self, features, totals):
        """Forward + backward of one micro-batch (XLA-compiled with --use_xla)."""
        with tf.GradientTape() as tape:
            loss, metrics = self._objective(features, totals, training=True)
            scaled = loss * self.loss_scale if self.precision == "fp16" else loss
        grads = tape.gradient(scaled, self._variables)
        grads = [
            tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(grads, self._variables, strict=True)
        ]
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
                    lambda t: tf.reshape(t, tf.concat([[k, -1], tf.shape(t)[1:]], 0))[i], features
                )

            loss, grads, metrics = self._compute(micro_batch(0), totals)
            for i in tf.range(1, k):
                l_i, g_i, m_i = self._compute(micro_batch(i), totals)
                loss, grads, metrics = loss + l_i, _add(grads, g_i), _add(metrics, m_i)
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        if self.precision == "fp16":
            grads = [g / self.loss_scale for g in grads]
            finite = self.optimizer.apply_gradients(
                zip(grads, self._names, strict=True), skip_if_nonfinite=True
            )
            self._update_loss_scale(finite)
        else:
            self.optimizer.apply_gradients(zip(grads, self._names, strict=True))
        return loss, metrics

    def _update_loss_scale(self, finite):
        """Dynamic loss scaling: halve on overflow, double after `loss_scale_period` good steps."""
        grow = tf.logical_and(finite, self.good_steps + 1 >= self.loss_scale_period)
        new_scale = tf.where(
            finite,
            tf.where(grow, self.loss_scale * 2.0, self.loss_scale),
            tf.maximum(self.loss_scale / 2.0, 1.0),
        )
        new_good = tf.where(
            tf.logical_and(finite, tf.logical_not(grow)),
            self.good_steps + 1,
            tf.zeros_like(self.good_steps),
        )
        self.loss_scale.assign(new_scale)
        self.good_steps.assign(new_good)

    def _metric_structure(self, element_spec):
        """The (sum, count) metric dict loss_fn returns, found by tracing it (no execution)."""
        spec = tf.nest.map_structure(
            lambda s: tf.TensorSpec([None] + s.shape[1:].as_list(), s.dtype), element_spec
        )
        concrete = tf.function(lambda f: self.loss_fn(f, False)[1]).get_concrete_function(spec)
        return tf.nest.map_structure(
            lambda _: tf.zeros([], tf.float32), concrete.structured_outputs
        )

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
                metrics = _add(
                    metrics,
                    tf.nest.map_structure(
                        lambda m: tf.cast(reduce_sum(m), tf.float32), step_metrics
                    ),
                )
            return losses.stack(), metrics

        return train_steps

    # -- checkpoints --------------------------------------------------------------------------

    def _extra_state(self):
        return {
            TRAINING_STATE_PREFIX + "optimizer_iterations": self.optimizer.iterations,
            TRAINING_STATE_PREFIX + "loss_scale": self.loss_scale,
            TRAINING_STATE_PREFIX + "good_steps": self.good_steps,
        }

    def _checkpointed_variables(self):
        """Everything a training checkpoint holds besides global_step, by name."""
        named = {}
        named.update(self.model.named_variables())
        named.update(self.optimizer.named_slot_variables())
        named.update(self._extra_state())
        return named

    def save_checkpoint(self):
        """Write model.ckpt-<global_step> (chief only), then update `checkpoint`, then prune."""
        if not self.is_chief or not self.output_dir:
            return None
        tensors = {
            name: tf.convert_to_tensor(v) for name, v in self._checkpointed_variables().items()
        }
        tensors["global_step"] = tf.constant(self.global_step, tf.int64)
        prefix = checkpoints.save_step_checkpoint(
            self.output_dir, self.global_step, tensors, self.keep_checkpoint_max
        )
        logging.info("saved checkpoint %s", prefix)
        return prefix

    def restore_latest(self):
        """Resume from output_dir's newest checkpoint that reads whole; returns its prefix.

        Damaged newer ones are skipped with a warning. Checkpoints written by an older
        version without the `training_state/` extras still resume (optimizer step = step).
        """
        named = self._checkpointed_variables()
        extras = set(self._extra_state())
        required = {n: v.shape.as_list() for n, v in named.items() if n not in extras}
        required["global_step"] = []
        self.skipped_checkpoints.clear()
        readable = checkpoints.readable_step_checkpoints(
            self.output_dir, required, self.skipped_checkpoints
        )
        for prefix, values in readable:
            stored = checkpoints.checkpoint_variable_names(prefix)
            extra_values = checkpoints.read_tensors(
                prefix, names=[n for n in extras if n in stored]
            )
            values.update(extra_values)
            for name, var in named.items():
                if name in values:
                    var.assign(values[name])
            self.global_step = int(values["global_step"])
            if TRAINING_STATE_PREFIX + "optimizer_iterations" not in values:
                self.optimizer.iterations.assign(self.global_step)
            logging.info("resumed from %s at step %d", prefix, self.global_step)
            return prefix
        return None

    def restore_or_initialize(self, init_checkpoint=None):
        """Resume from output_dir's latest readable checkpoint, else load init_checkpoint.

        init_checkpoint may be any released checkpoint of either style; its optimizer slots and
        global_step are ignored (training starts at step 0). An output_dir that holds
        checkpoint files none of which can be resumed is refused unless overwrite_output_dir
        (a fresh run would overwrite them). Returns the starting step.
        """
        if self.is_chief:
            checkpoints.remove_unfinished_files(self.output_dir)
        resumed = self.restore_latest() if self.output_dir else None
        if resumed and self.is_chief:
            checkpoints.point_state_file_at(self.output_dir, resumed)
        if resumed:
            if init_checkpoint:
                logging.info(
                    "output_dir has %s: resuming from it, not from --init_checkpoint", resumed
                )
            return self.global_step
        if checkpoints.has_run_files(self.output_dir):
            if not self.overwrite_output_dir:
                skipped = self.skipped_checkpoints
                why = (
                    f": {os.path.basename(skipped[0][0])}: {skipped[0][1]}"
                    if skipped
                    else " (it has checkpoint files but no step checkpoint)"
                )
                raise AlbertError(
                    f"cannot resume from {self.output_dir}{why}; rerun with the config, --style "
                    "and --optimizer of the run that wrote it, pass --overwrite_output_dir to "
                    "start over there (its checkpoints are deleted), or use a new --output_dir"
                )
            if self.is_chief:
                checkpoints.clear_run_files(self.output_dir)
        if init_checkpoint:
            report = checkpoints.load_checkpoint(self.model, init_checkpoint)
            logging.info(
                "initialised %d variables from %s (%d left as initialised: %s)",
                len(report.loaded),
                report.path,
                len(report.missing_allowed),
                ", ".join(report.missing_allowed[:5]),
            )
        return self.global_step

    # -- logging ------------------------------------------------------------------------------

    def _summary_writer(self):
        if self._writer is None and self.is_chief and self.output_dir:
            self._writer = tf.summary.create_file_writer(self.output_dir)
        return self._writer

    def _eta(self, num_train_steps, fallback_step_seconds):
        step_seconds = self._step_seconds or fallback_step_seconds
        return format_duration((num_train_steps - self.global_step) * step_seconds)

    def _log_loop(self, steps, losses, metrics, elapsed, global_batch_size, num_train_steps):
        examples_per_second = steps * global_batch_size / max(elapsed, 1e-9)
        record = {
            "step": self.global_step,
            "loss": float(np.mean(losses)),
            "last_loss": float(losses[-1]),
            "examples_per_second": examples_per_second,
            "learning_rate": float(self.optimizer.current_learning_rate()),
        }
        for name, (total, count) in metrics.items():
            record[name] = float(total) / max(float(count), 1e-12)
        if self.precision == "fp16":
            record["loss_scale"] = float(self.loss_scale.numpy())
        # history (for callers) keeps every step's loss; the log files get the summary.
        self.history.append(dict(record, step_losses=[float(x) for x in losses]))
        logging.info(
            "step %d/%d loss %.4f (%s) %.1f examples/s ETA %s",
            self.global_step,
            num_train_steps,
            record["loss"],
            " ".join(f"{k} {record[k]:.4f}" for k in metrics),
            examples_per_second,
            self._eta(num_train_steps, elapsed / max(steps, 1)),
        )
        self._last_progress = time.time()
        writer = self._summary_writer()
        if writer is not None:
            write_scalars(
                writer, self.global_step, {k: v for k, v in record.items() if k != "step"}
            )
            append_jsonl(os.path.join(self.output_dir, "train_log.jsonl"), record)

    def _log_progress(self, num_train_steps, global_batch_size):
        """A short line between two loop logs, at most every PROGRESS_SECONDS."""
        if time.time() - self._last_progress < PROGRESS_SECONDS or not self._step_seconds:
            return
        logging.info(
            "step %d/%d, %.2f steps/s, %.1f examples/s, ETA %s",
            self.global_step,
            num_train_steps,
            1.0 / self._step_seconds,
            global_batch_size / self._step_seconds,
            self._eta(num_train_steps, self._step_seconds),
        )
        self._last_progress = time.time()

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
                local = dataset_fn(
                    tf.distribute.InputContext(
                        num_replicas_in_sync=self.strategy.num_replicas_in_sync
                    )
                )
            self._train_steps = self._build_train_steps(self._metric_structure(local.element_spec))
        return iter(dataset)

    def run_steps(self, iterator, num_steps):
        """Run num_steps training steps in one compiled call; advances global_step.

        Returns (per-step losses as a NumPy array, {metric: (sum, count)} over the steps).
        """
        try:
            losses, metrics = self._train_steps(iterator, tf.constant(num_steps, tf.int32))
        except tf.errors.DataLossError as e:
            raise AlbertError(
                _corrupt_input_message(e, self.global_step, self._find_damaged_input)
            ) from None
        self.global_step += num_steps
        return losses.numpy(), {k: (float(v[0]), float(v[1])) for k, v in metrics.items()}

    def train(
        self,
        dataset_fn,
        num_train_steps,
        global_batch_size,
        iterations_per_loop=1000,
        save_checkpoints_steps=1000,
        after_checkpoint=None,
    ):
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
                f"({replicas}) x gradient_accumulation_steps ({self.accumulation})"
            )
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
        self._find_damaged_input = getattr(dataset_fn, "find_damaged_file", None)
        while self.global_step < num_train_steps:
            segment_end = num_train_steps
            if save_every:
                segment_end = min(
                    num_train_steps, (self.global_step // save_every + 1) * save_every
                )
            while self.global_step < segment_end:
                steps = min(iterations_per_loop, segment_end - self.global_step)
                began = time.time()
                losses, metrics = self._run_loop(
                    iterator, steps, num_train_steps, global_batch_size
                )
                elapsed = time.time() - began
                if not np.all(np.isfinite(losses)) and self.precision != "fp16":
                    raise AlbertError(
                        f"the loss became {losses[-1]} at step {self.global_step}: lower "
                        "--learning_rate or raise --num_warmup_steps"
                    )
                self._log_loop(steps, losses, metrics, elapsed, global_batch_size, num_train_steps)
            if save_every or self.global_step >= num_train_steps:
                self.save_checkpoint()
                if after_checkpoint is not None:
                    after_checkpoint()
        # Kept for a next call that goes on from here (run_classifier.py: one per epoch),
        # which saves rebuilding the input and, on several devices, the wait when the
        # distributed iterator is deleted (see `distribute`).
        self._kept_input = (dataset_fn, iterator, self.global_step)
        return self.history

    def _run_loop(self, iterator, steps, num_train_steps, global_batch_size):
        """`steps` steps as one compiled call, or as several shorter ones (see _call_length).

        Returns what run_steps returns, over all the steps.
        """
        all_losses, totals = [], None
        while steps > 0:
            n = self._call_length(steps)
            if self._calls == 0:
                logging.info("compiling the training step (the first call takes longest)")
            began = time.time()
            losses, metrics = self.run_steps(iterator, n)
            self._time_call(n, time.time() - began)
            all_losses.append(losses)
            totals = metrics if totals is None else _add_pairs(totals, metrics)
            steps -= n
            if steps:
                self._log_progress(num_train_steps, global_batch_size)
        return np.concatenate(all_losses), totals

    def _call_length(self, steps):
        """Steps for the next compiled call, at most `steps` (the rest of the host loop)."""
        if not self._adapt_calls:
            return steps
        if self._steps_per_call is None:
            return 1  # the first call compiles, the second times one step
        return min(steps, self._steps_per_call)

    def _time_call(self, steps, seconds):
        """Learn the step time from a call and size the next calls to TARGET_CALL_SECONDS."""
        self._calls += 1
        if self._calls == 1:
            logging.info("first call (tracing and compiling, %d step) took %.1fs", steps, seconds)
            return
        self._step_seconds = seconds / steps
        self._steps_per_call = max(1, int(TARGET_CALL_SECONDS / max(self._step_seconds, 1e-9)))

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
                    lambda v: strategy.reduce(
                        tf.distribute.ReduceOp.SUM, tf.cast(v, tf.float32), axis=None
                    ),
                    outputs,
                )

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
                find = getattr(dataset_fn, "find_damaged_file", None)
                raise AlbertError(_corrupt_input_message(e, self.global_step, find)) from None
            values = tf.nest.map_structure(
                lambda t: t.numpy().astype(np.float64), self._eval_step(batch)
            )
            totals = values if totals is None else tf.nest.map_structure(np.add, totals, values)
        if totals is None:
            raise AlbertError("the eval data is empty: check the eval input files")
        loss_sums, weights, metrics = totals
        results = {
            name: float(total / max(count, 1e-12)) for name, (total, count) in metrics.items()
        }
        terms = {t: float(loss_sums[t] / (weights[t] + LOSS_NORMALIZER_EPSILON)) for t in loss_sums}
        results.update(terms)
        results["loss"] = float(sum(terms.values()))
        results["global_step"] = self.global_step
        writer = self._summary_writer()
        if writer is not None:
            eval_writer = tf.summary.create_file_writer(os.path.join(self.output_dir, "eval"))
            write_scalars(
                eval_writer,
                self.global_step,
                {k: v for k, v in results.items() if k != "global_step"},
            )
        return results


def _corrupt_input_message(error, step, find_damaged_file=None):
    """TF names neither the file nor the fix; `find_damaged_file(error)` (a dataset_fn's, if
    it has one) finds the file by reading the input files again."""
    where = find_damaged_file(error) if find_damaged_file else None
    if where:
        return (
            f"corrupt input data at step {step} in {where}: the file is damaged or truncated; "
            "regenerate it or leave it out of the input list"
        )
    return (
        f"corrupt input data at step {step} ({first_line(error)}): a TFRecord "
        "file is damaged or truncated; regenerate it or leave it out of the input list"
    )


def format_duration(seconds):
    """ "05:38:22", or "5d 06:15:45" past a day (time.strftime alone wraps at 24 hours)."""
    days, rest = divmod(int(seconds), 86400)
    clock = time.strftime("%H:%M:%S", time.gmtime(rest))
    return f"{days}d {clock}" if days else clock


def _add_pairs(a, b):
    """{name: (sum, count)} + {name: (sum, count)}, on the host."""
    return {k: (a[k][0] + b[k][0], a[k][1] + b[k][1]) for k in a}


def append_jsonl(path, record):
    """Append one JSON line; a line torn by a killed run is ended first, so that it spoils
    only itself and not the record after it."""
    line = json.dumps(record, ensure_ascii=False) + "\n"
    if "://" in path:  # cloud storage: no partial appends to repair
        with tf.io.gfile.GFile(path, "a") as f:
            f.write(line)
        return
    with open(path, "a+b") as f:
        f.seek(0, os.SEEK_END)
        if f.tell():
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write(line.encode("utf-8"))


def write_eval_results(path, results, header=None):
    """`key = value` lines, sorted, as the originals' eval_results.txt (chief writes it)."""
    lines = [header] if header else []
    lines += [f"{key} = {results[key]}" for key in sorted(results)]
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    for line in lines:
        logging.info("  %s", line)
