"""ALBERT pretraining (masked LM + sentence-order prediction) on tf.distribute.

The TF2 counterpart of albert_zh's / Google's run_pretraining.py: same flags and TFRecords,
same losses and metrics, checkpoints under the original variable names. One script for a
laptop CPU, several GPUs (--strategy=mirrored), several workers (TF_CONFIG,
--strategy=multi_worker) and a TPU (--use_tpu --tpu_name=...). The loop mirrors TPUEstimator:
`iterations_per_loop` steps run inside one compiled function, then the host logs and saves.

    python run_pretraining.py --bert_config_file=configs/albert_config_tiny_google.json \
      --input_file=/tmp/pretrain/*.tfrecord --output_dir=/tmp/albert_tiny_pretrain \
      --do_train --do_eval --train_batch_size=32 --num_train_steps=2000 \
      --num_warmup_steps=200 --learning_rate=1e-3 --precision=bf16

Re-running the same command after an interruption (even kill -9) resumes from the last
complete checkpoint in output_dir with the same weights, optimizer slots, step and data order.
Continued pretraining starts from --init_checkpoint: a checkpoint of either style or a Hugging
Face ALBERT directory (whose config.json then replaces --bert_config_file).
"""

import cpu_kernels  # noqa: F401  # isort: skip  (first: TensorFlow reads its kernel choice on load)
import os

import numpy as np
import tensorflow as tf
from absl import flags, logging

import checkpoints
import errors
import modeling
import optimization
import pretraining_data
import training
from errors import AlbertError

FLAGS = flags.FLAGS

# ----------------------------------------------------------------------------------------------
# Input.
# ----------------------------------------------------------------------------------------------


def input_fn_builder(
    input_files, global_batch_size, is_training, seed, vocab_size, repeat_eval=False
):
    """dataset_fn over the pretraining TFRecords. Every file's first records are checked
    (schema, token ids < vocab_size), so a stray file matched by a glob, or data made with
    another vocab, is named before training starts."""
    spec = pretraining_data.pretraining_feature_spec(
        FLAGS.max_seq_length, FLAGS.max_predictions_per_seq
    )
    for path in input_files:
        pretraining_data.check_tfrecord_schema(path, spec, pretraining_data.FLAG_FOR_FEATURE)
        pretraining_data.check_token_ids(path, vocab_size)
    dataset_fn = pretraining_data.make_dataset_fn(
        input_files,
        spec,
        global_batch_size,
        is_training,
        seed=seed,
        drop_remainder=is_training or repeat_eval,
    )
    if not repeat_eval:
        return dataset_fn

    def repeated_fn(ctx=None, start_step=0):
        # Several workers must run the same number of eval steps: repeat, as the originals do.
        return dataset_fn(ctx).repeat()

    repeated_fn.find_damaged_file = dataset_fn.find_damaged_file
    return repeated_fn


# ----------------------------------------------------------------------------------------------
# Model and loss.
# ----------------------------------------------------------------------------------------------


def make_evaluator(trainer, input_files):
    """evaluate() -> results on the eval data at the current step, written to output_dir:
    `eval_results.txt` (the latest, in the originals' format) and one JSON line per evaluation
    in `eval_log.jsonl` (for plot_pretraining.py). A step already evaluated is not redone."""
    eval_files = (
        pretraining_data.expand_input_files(FLAGS.eval_input_file, "eval_input_file")
        if FLAGS.eval_input_file
        else input_files
    )
    several_workers = training.tf_config_task_count() > 1
    eval_fn = input_fn_builder(
        eval_files,
        FLAGS.eval_batch_size,
        False,
        FLAGS.seed,
        trainer.model.config.vocab_size,
        repeat_eval=several_workers or FLAGS.use_tpu,
    )
    done = {}

    def evaluate():
        if trainer.global_step in done:
            return done[trainer.global_step]
        results = trainer.evaluate(eval_fn, max_steps=FLAGS.max_eval_steps)
        done[trainer.global_step] = results
        if trainer.is_chief:
            path = os.path.join(FLAGS.output_dir, "eval_results.txt")
            training.write_eval_results(path, results, header="***** Eval results *****")
            training.append_jsonl(os.path.join(FLAGS.output_dir, "eval_log.jsonl"), results)
            logging.info("wrote %s", path)
        return results

    return evaluate


def weights_fingerprint(model):
    """A checksum of all weights (multi-worker runs log it so workers can be compared)."""
    return float(
        sum(np.abs(v.numpy()).astype(np.float64).sum() for v in model.named_variables().values())
    )


# ----------------------------------------------------------------------------------------------
# main.
# ----------------------------------------------------------------------------------------------


def validate_flags():
    """Every flag checked before TensorFlow starts; returns the model config."""
    training.check_training_flags(FLAGS)
    config = checkpoints.config_from_flags(FLAGS)
    if not FLAGS.input_file:
        raise AlbertError("--input_file is required (TFRecords from create_pretraining_data.py)")
    if not FLAGS.do_train and not FLAGS.do_eval:
        raise AlbertError("at least one of --do_train or --do_eval must be set")
    for name in ("num_train_steps", "max_predictions_per_seq"):
        if getattr(FLAGS, name) <= 0:
            raise AlbertError(f"--{name} must be positive, got {getattr(FLAGS, name)}")
    if FLAGS.num_warmup_steps < 0:
        raise AlbertError("--num_warmup_steps must be >= 0")
    return config


def define_flags():
    """The command-line flags (defined only when run as a script, so modules with flags of
    the same names can be imported together, e.g. by the tests)."""
    training.define_training_flags(FLAGS, keep_checkpoint_max=20, optimizer="lamb")
    flags.DEFINE_string("input_file", None, "TFRecord files: comma-separated list and/or globs.")
    flags.DEFINE_string("eval_input_file", None, "TFRecords for --do_eval (default: --input_file).")
    flags.DEFINE_integer("max_predictions_per_seq", 20, "Masked positions per sequence (P).")
    flags.DEFINE_integer("num_train_steps", 100000, "Training steps.")
    flags.DEFINE_integer("num_warmup_steps", 10000, "Linear warmup steps.")
    flags.DEFINE_integer("max_eval_steps", 100, "Maximum eval batches.")
    flags.DEFINE_float("poly_power", 1.0, "Power of the polynomial learning-rate decay.")
    flags.DEFINE_bool(
        "eval_every_checkpoint",
        True,
        "With --do_train --do_eval, evaluate after every checkpoint (as Google's "
        "eval job does), not only at the end.",
    )


def main(_):
    config = validate_flags()
    # The strategy first: multi-worker and TPU runtimes must be set up before other TF ops.
    strategy = training.strategy_from_flags(FLAGS)
    config.check_max_seq_length(FLAGS.max_seq_length)
    style = checkpoints.resolve_style(config, FLAGS.init_checkpoint, FLAGS.style)
    input_files = pretraining_data.expand_input_files(FLAGS.input_file)
    logging.info("%d input file(s), e.g. %s", len(input_files), input_files[0])
    lock = checkpoints.OutputDirLock(FLAGS.output_dir)
    if training.is_chief(strategy):
        lock.acquire()  # one writer per output_dir: a second run gets a one-line error
    try:
        run(strategy, config, style, input_files)
    finally:
        lock.release()


def run(strategy, config, style, input_files):
    """Train and/or evaluate as the flags say (the chief holds output_dir's lock)."""
    with strategy.scope():
        model = modeling.AlbertForPretraining(config, style=style, seed=FLAGS.seed)
        optimizer = optimization.create_optimizer(
            FLAGS.learning_rate,
            FLAGS.num_train_steps,
            FLAGS.num_warmup_steps,
            optimizer=FLAGS.optimizer,
            poly_power=FLAGS.poly_power,
            style=style,
        )
        optimizer.build(model.named_variables())
    loss_fn, loss_weights_fn = training.pretraining_losses(model)
    trainer = training.trainer_from_flags(
        FLAGS, strategy, model, optimizer, loss_fn, loss_weights_fn=loss_weights_fn
    )
    if trainer.is_chief:
        # Like a released model zip, output_dir holds the config its checkpoints belong to
        # (run_classifier_lcqmc.sh and the export tools pick it up from there).
        tf.io.gfile.makedirs(FLAGS.output_dir)
        with tf.io.gfile.GFile(os.path.join(FLAGS.output_dir, checkpoints.CONFIG_COPY), "w") as f:
            f.write(config.replace(style=style).to_json_string())

    evaluate = make_evaluator(trainer, input_files) if FLAGS.do_eval else None
    if FLAGS.do_train:
        dataset_fn = input_fn_builder(
            input_files, FLAGS.train_batch_size, True, FLAGS.seed, config.vocab_size
        )
        logging.info(
            "training %s-style model from step %d to %d, global batch %d on %d replica(s), %s%s",
            style,
            trainer.global_step,
            FLAGS.num_train_steps,
            FLAGS.train_batch_size,
            strategy.num_replicas_in_sync,
            FLAGS.precision,
            ", XLA" if FLAGS.use_xla else "",
        )
        trainer.train(
            dataset_fn,
            FLAGS.num_train_steps,
            FLAGS.train_batch_size,
            iterations_per_loop=FLAGS.iterations_per_loop,
            save_checkpoints_steps=FLAGS.save_checkpoints_steps,
            after_checkpoint=evaluate if FLAGS.eval_every_checkpoint else None,
        )
        if trainer.is_chief and (
            trainer.global_step == 0 or not checkpoints.latest_checkpoint(FLAGS.output_dir)
        ):
            trainer.save_checkpoint()
    logging.info(
        "weights fingerprint %.10e at step %d", weights_fingerprint(model), trainer.global_step
    )

    if evaluate is not None:
        evaluate()


if __name__ == "__main__":
    define_flags()
    errors.run_main(main)
