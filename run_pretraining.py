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
"""

import json
import os

import numpy as np
import tensorflow as tf
from absl import flags, logging

import errors
import modeling
import optimization
import training
from errors import AlbertError

FLAGS = flags.FLAGS

CONFIG_COPY = "albert_config.json"  # written into output_dir

# ----------------------------------------------------------------------------------------------
# Input.
# ----------------------------------------------------------------------------------------------

FLAG_FOR_FEATURE = {
    "input_ids": "max_seq_length", "input_mask": "max_seq_length",
    "segment_ids": "max_seq_length", "masked_lm_positions": "max_predictions_per_seq",
    "masked_lm_ids": "max_predictions_per_seq", "masked_lm_weights": "max_predictions_per_seq",
}


def input_fn_builder(input_files, global_batch_size, is_training, seed, repeat_eval=False):
    """dataset_fn over the pretraining TFRecords (schema checked on every file's first record,
    so a stray file matched by a glob is named before training starts)."""
    spec = training.pretraining_feature_spec(FLAGS.max_seq_length, FLAGS.max_predictions_per_seq)
    for path in input_files:
        training.check_tfrecord_schema(path, spec, FLAG_FOR_FEATURE)
    dataset_fn = training.make_dataset_fn(input_files, spec, global_batch_size, is_training,
                                          seed=seed, drop_remainder=is_training or repeat_eval)
    if not repeat_eval:
        return dataset_fn
    # Several workers must run the same number of eval steps: repeat, as the originals do.
    return lambda ctx=None, start_step=0: dataset_fn(ctx).repeat()


# ----------------------------------------------------------------------------------------------
# Model and loss.
# ----------------------------------------------------------------------------------------------

def make_loss_fns(model):
    """loss_fn and loss_weights_fn (training.py contract) of masked LM + sentence order."""

    def loss_fn(features, training):
        outputs = model(features["input_ids"], features["input_mask"], features["segment_ids"],
                        features["masked_lm_positions"], training=training)
        log_probs = outputs["masked_lm_log_probs"]                       # [B, P, V]
        label_ids = features["masked_lm_ids"]
        label_weights = tf.cast(features["masked_lm_weights"], tf.float32)
        per_position_loss = -tf.gather(log_probs, label_ids, batch_dims=2)   # [B, P]
        mlm_correct = tf.cast(tf.equal(tf.argmax(log_probs, -1, output_type=tf.int32),
                                       label_ids), tf.float32)

        sop_logits = outputs["sentence_order_logits"]                    # [B, 2]
        sop_labels = tf.reshape(features["next_sentence_labels"], [-1])
        sop_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=sop_labels,
                                                                  logits=sop_logits)
        sop_correct = tf.cast(tf.equal(tf.argmax(sop_logits, -1, output_type=tf.int32),
                                       sop_labels), tf.float32)
        num_examples = tf.cast(tf.shape(sop_labels)[0], tf.float32)
        loss_sums = {"masked_lm_loss": tf.reduce_sum(label_weights * per_position_loss),
                     "sentence_order_loss": tf.reduce_sum(sop_loss)}
        metrics = {
            "masked_lm_accuracy": (tf.reduce_sum(label_weights * mlm_correct),
                                   tf.reduce_sum(label_weights)),
            "sentence_order_accuracy": (tf.reduce_sum(sop_correct), num_examples),
        }
        return loss_sums, metrics

    def loss_weights_fn(features):
        return {"masked_lm_loss": tf.reduce_sum(tf.cast(features["masked_lm_weights"],
                                                        tf.float32)),
                "sentence_order_loss": tf.cast(tf.shape(features["input_ids"])[0], tf.float32)}

    return loss_fn, loss_weights_fn


def make_evaluator(trainer, input_files):
    """evaluate() -> results on the eval data at the current step, written to output_dir:
    `eval_results.txt` (the latest, in the originals' format) and one JSON line per evaluation
    in `eval_log.jsonl` (for plot_pretraining.py). A step already evaluated is not redone."""
    eval_files = (training.expand_input_files(FLAGS.eval_input_file, "eval_input_file")
                  if FLAGS.eval_input_file else input_files)
    several_workers = training._tf_config_task_count() > 1
    eval_fn = input_fn_builder(eval_files, FLAGS.eval_batch_size, False, FLAGS.seed,
                               repeat_eval=several_workers or FLAGS.use_tpu)
    done = {}

    def evaluate():
        if trainer.global_step in done:
            return done[trainer.global_step]
        results = trainer.evaluate(eval_fn, max_steps=FLAGS.max_eval_steps)
        done[trainer.global_step] = results
        if trainer.is_chief:
            path = os.path.join(FLAGS.output_dir, "eval_results.txt")
            training.write_eval_results(path, results, header="***** Eval results *****")
            with tf.io.gfile.GFile(os.path.join(FLAGS.output_dir, "eval_log.jsonl"), "a") as f:
                f.write(json.dumps(results) + "\n")
            logging.info("wrote %s", path)
        return results

    return evaluate


def weights_fingerprint(model):
    """A checksum of all weights (multi-worker runs log it so workers can be compared)."""
    return float(sum(np.abs(v.numpy()).astype(np.float64).sum()
                     for v in model.named_variables().values()))


# ----------------------------------------------------------------------------------------------
# main.
# ----------------------------------------------------------------------------------------------

def validate_flags():
    config_file = FLAGS.bert_config_file or FLAGS.albert_config_file
    if FLAGS.bert_config_file and FLAGS.albert_config_file and (
            FLAGS.bert_config_file != FLAGS.albert_config_file):
        raise AlbertError("--bert_config_file and --albert_config_file differ; give only one")
    if not config_file:
        raise AlbertError("--bert_config_file (or --albert_config_file) is required")
    if not FLAGS.output_dir:
        raise AlbertError("--output_dir is required")
    if not FLAGS.input_file:
        raise AlbertError("--input_file is required (TFRecords from create_pretraining_data.py)")
    if not FLAGS.do_train and not FLAGS.do_eval:
        raise AlbertError("at least one of --do_train or --do_eval must be set")
    for name in ("train_batch_size", "eval_batch_size", "num_train_steps", "max_seq_length",
                 "max_predictions_per_seq", "iterations_per_loop"):
        if getattr(FLAGS, name) <= 0:
            raise AlbertError(f"--{name} must be positive, got {getattr(FLAGS, name)}")
    if FLAGS.num_warmup_steps < 0 or FLAGS.save_checkpoints_steps < 0:
        raise AlbertError("--num_warmup_steps and --save_checkpoints_steps must be >= 0")
    if FLAGS.precision == "fp16" and not tf.config.list_physical_devices("GPU"):
        logging.warning("--precision=fp16 without a GPU is slow; bf16 is the CPU/TPU choice")
    return config_file


def define_flags():
    """The command-line flags (defined only when run as a script, so modules with flags of
    the same names can be imported together, e.g. by the tests)."""
    # -- the originals' flags --------------------------------------------------------------------
    flags.DEFINE_string("bert_config_file", None, "ALBERT config JSON (either style).")
    flags.DEFINE_string("albert_config_file", None, "Alias of --bert_config_file (Google's name).")
    flags.DEFINE_string("input_file", None, "TFRecord files: comma-separated list and/or globs.")
    flags.DEFINE_string("eval_input_file", None, "TFRecords for --do_eval (default: --input_file).")
    flags.DEFINE_string("output_dir", None, "Where checkpoints, logs and eval results go.")
    flags.DEFINE_string("init_checkpoint", None,
                        "Released checkpoint (either style) to start from; slots are ignored.")
    flags.DEFINE_integer("max_seq_length", 128, "Sequence length of the TFRecords.")
    flags.DEFINE_integer("max_predictions_per_seq", 20, "Masked positions per sequence (P).")
    flags.DEFINE_bool("do_train", False, "Run training.")
    flags.DEFINE_bool("do_eval", False, "Evaluate the final (or latest) checkpoint, and with "
                      "--do_train every checkpoint on the way.")
    flags.DEFINE_integer("train_batch_size", 32, "Global training batch size.")
    flags.DEFINE_integer("eval_batch_size", 8, "Global eval batch size.")
    flags.DEFINE_float("learning_rate", 5e-5, "Peak learning rate.")
    flags.DEFINE_integer("num_train_steps", 100000, "Training steps.")
    flags.DEFINE_integer("num_warmup_steps", 10000, "Linear warmup steps.")
    flags.DEFINE_integer("save_checkpoints_steps", 1000, "Checkpoint every this many steps.")
    flags.DEFINE_integer("iterations_per_loop", 1000, "Steps per compiled device loop.")
    flags.DEFINE_integer("max_eval_steps", 100, "Maximum eval batches.")
    flags.DEFINE_integer("keep_checkpoint_max", 20, "Checkpoints kept (0 = all); albert_zh kept 20.")
    flags.DEFINE_enum("optimizer", "lamb", ["lamb", "adamw"], "Optimizer.")
    flags.DEFINE_float("poly_power", 1.0, "Power of the polynomial learning-rate decay.")
    flags.DEFINE_bool("use_tpu", False, "Train on a TPU (TPUClusterResolver + TPUStrategy).")
    flags.DEFINE_string("tpu_name", None, "TPU name or grpc:// address.")
    flags.DEFINE_string("tpu_zone", None, "GCE zone of the TPU (optional).")
    flags.DEFINE_string("gcp_project", None, "GCP project of the TPU (optional).")
    flags.DEFINE_integer("num_tpu_cores", 8, "TPU cores (TPUStrategy uses all cores it finds).")
    # -- additions -------------------------------------------------------------------------------
    flags.DEFINE_enum("strategy", "auto", list(training.STRATEGIES), "tf.distribute strategy.")
    flags.DEFINE_enum("precision", "fp32", list(training.PRECISIONS),
                      "Compute dtype: bf16 on CPU/TPU, fp16 (with loss scaling) on GPU.")
    flags.DEFINE_bool("use_xla", False, "XLA-compile the forward/backward pass.")
    flags.DEFINE_integer("gradient_accumulation_steps", 1,
                         "Split each replica's batch into this many micro-batches (same result, "
                         "less memory).")
    flags.DEFINE_enum("style", None, list(modeling.STYLES),
                      "Model style (default: from --init_checkpoint, else the config).")
    flags.DEFINE_integer("seed", 12345, "Seed of the data order (and of fresh weights).")
    flags.DEFINE_bool("eval_every_checkpoint", True,
                      "With --do_train --do_eval, evaluate after every checkpoint (as Google's "
                      "eval job does), not only at the end.")


def main(_):
    config_file = validate_flags()
    # The strategy first: multi-worker and TPU runtimes must be set up before other TF ops.
    strategy = training.create_strategy(FLAGS.strategy, FLAGS.use_tpu, FLAGS.tpu_name,
                                        FLAGS.tpu_zone, FLAGS.gcp_project)
    if FLAGS.use_tpu and strategy.num_replicas_in_sync != FLAGS.num_tpu_cores:
        logging.warning("--num_tpu_cores=%d but the TPU has %d cores; using all of them",
                        FLAGS.num_tpu_cores, strategy.num_replicas_in_sync)

    config = modeling.AlbertConfig.from_json_file(config_file)
    if FLAGS.max_seq_length > config.max_position_embeddings:
        raise AlbertError(f"--max_seq_length={FLAGS.max_seq_length} exceeds the config's "
                          f"max_position_embeddings={config.max_position_embeddings}")
    style = modeling.resolve_style(config, FLAGS.init_checkpoint, FLAGS.style)
    input_files = training.expand_input_files(FLAGS.input_file)
    logging.info("%d input file(s), e.g. %s", len(input_files), input_files[0])

    with strategy.scope():
        model = modeling.AlbertForPretraining(config, style=style, seed=FLAGS.seed)
        optimizer = optimization.create_optimizer(
            FLAGS.learning_rate, FLAGS.num_train_steps, FLAGS.num_warmup_steps,
            optimizer=FLAGS.optimizer, poly_power=FLAGS.poly_power, style=style)
        optimizer.build(model.named_variables())
    loss_fn, loss_weights_fn = make_loss_fns(model)
    trainer = training.Trainer(
        strategy, model, optimizer, loss_fn, FLAGS.output_dir, loss_weights_fn=loss_weights_fn,
        precision=FLAGS.precision, use_xla=FLAGS.use_xla,
        gradient_accumulation_steps=FLAGS.gradient_accumulation_steps,
        keep_checkpoint_max=FLAGS.keep_checkpoint_max)
    trainer.restore_or_initialize(FLAGS.init_checkpoint)
    if trainer.is_chief:
        # Like a released model zip, output_dir holds the config its checkpoints belong to
        # (run_classifier_lcqmc.sh and the export tools pick it up from there).
        tf.io.gfile.makedirs(FLAGS.output_dir)
        with tf.io.gfile.GFile(os.path.join(FLAGS.output_dir, CONFIG_COPY), "w") as f:
            f.write(config.replace(style=style).to_json_string())

    evaluate = make_evaluator(trainer, input_files) if FLAGS.do_eval else None
    if FLAGS.do_train:
        dataset_fn = input_fn_builder(input_files, FLAGS.train_batch_size, True, FLAGS.seed)
        logging.info("training %s-style model from step %d to %d, global batch %d on %d "
                     "replica(s), %s%s", style, trainer.global_step, FLAGS.num_train_steps,
                     FLAGS.train_batch_size, strategy.num_replicas_in_sync, FLAGS.precision,
                     ", XLA" if FLAGS.use_xla else "")
        trainer.train(dataset_fn, FLAGS.num_train_steps, FLAGS.train_batch_size,
                      iterations_per_loop=FLAGS.iterations_per_loop,
                      save_checkpoints_steps=FLAGS.save_checkpoints_steps,
                      after_checkpoint=evaluate if FLAGS.eval_every_checkpoint else None)
        if trainer.is_chief and (trainer.global_step == 0 or not training.latest_checkpoint(
                FLAGS.output_dir)):
            trainer.save_checkpoint()
    logging.info("weights fingerprint %.10e at step %d", weights_fingerprint(model),
                 trainer.global_step)

    if evaluate is not None:
        evaluate()


if __name__ == "__main__":
    define_flags()
    errors.run_main(main)
