"""Fine-tune ALBERT on a Chinese classification task, evaluate it and predict with it.

    python run_classifier.py --task_name=lcqmc --data_dir=../shared/data/lcqmc_small \
      --vocab_file=../shared/data/vocab.txt --bert_config_file=configs/albert_config_tiny.json \
      --init_checkpoint=prev_trained_model/albert_tiny/albert_model.ckpt \
      --output_dir=/tmp/lcqmc --do_train --do_eval --do_predict \
      --max_seq_length=128 --train_batch_size=64 --learning_rate=1e-4 --num_train_epochs=5

Flags follow albert_zh's run_classifier.py. Differences, all deliberate:
  * reading loses no example and reports malformed rows (classifier_data.py);
  * batches are padded to their longest example and grouped by length (much less padding);
    --fixed_length pads to max_seq_length (static shapes, e.g. for TPUs);
  * the training loop, strategies, precision and checkpointing are the ones of
    run_pretraining.py (training.py);
  * with --do_eval the dev set is evaluated after every epoch; the checkpoint with the best
    dev accuracy is kept as `model.ckpt-best`, and prediction uses it;
  * every output goes to --output_dir (the original wrote eval results into --data_dir):
    eval_results.txt (accuracy, macro_f1, loss, global_step per evaluation, also as JSON
    lines in eval_results.jsonl), test_results.tsv (class probabilities per test row, as the
    original) and test_predictions.tsv (readable: texts, gold, predicted label, probability).

--init_checkpoint may also be a Hugging Face ALBERT directory (see checkpoints.py); a
directory that holds its config and vocab.txt makes --bert_config_file and --vocab_file
optional. Checkpoints keep the original names (`bert/...`, `output_weights`, `output_bias`,
`global_step`), so the original code, export_savedmodel.py and similarity.py read them.
"""

import cpu_kernels  # noqa: F401  # isort: skip  (first: TensorFlow reads its kernel choice on load)
import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import flags, logging

import checkpoints
import classifier_data
import errors
import inference
import modeling
import tokenization
import training

FLAGS = flags.FLAGS

# ----------------------------------------------------------------------------- flags


def define_flags(flag_values=FLAGS):
    """Define the flags (on import they are not: run_pretraining.py shares many names, and
    tests define them on their own FlagValues)."""
    fv = flag_values
    training.define_fine_tuning_flags(fv)
    flags.DEFINE_string(
        "task_name", None, "Task: " + ", ".join(sorted(classifier_data.PROCESSORS)), flag_values=fv
    )
    flags.DEFINE_list(
        "labels", None, "Label set of the generic `tsv` task (default: from train).", flag_values=fv
    )
    flags.mark_flags_as_required(["task_name", "output_dir"], flag_values=fv)


SPLIT_FLAGS = {"train": "train_file", "dev": "dev_file", "test": "test_file"}


# ----------------------------------------------------------------------------- data


def split_path(processor, split):
    """The file of `split`: its --<split>_file flag, else the task's file in --data_dir."""
    explicit = getattr(FLAGS, SPLIT_FLAGS[split])
    if explicit:
        return explicit
    if not FLAGS.data_dir:
        raise errors.AlbertError(f"pass --data_dir (or --{SPLIT_FLAGS[split]}) to read {split}")
    return processor.split_path(FLAGS.data_dir, split)


def read_split(processor, split):
    """Read one split, log what was kept / skipped / malformed, refuse an empty result."""
    path = split_path(processor, split)
    examples = processor.get_examples(path, split)
    report = processor.reports[split]
    log = logging.warning if report.num_malformed else logging.info
    log("%s: %s", split, report.summary())
    if not examples:
        raise errors.AlbertError(f"{path}: no usable {split} examples ({report.summary()})")
    return examples


def to_features(examples, label_list, tokenizer):
    start = time.time()
    features = classifier_data.convert_examples_to_features(
        examples, label_list, FLAGS.max_seq_length, tokenizer
    )
    logging.info(
        "tokenized %d examples in %.1fs (mean length %.1f, max %d)",
        len(features),
        time.time() - start,
        features.lengths.mean(),
        features.lengths.max(),
    )
    return features


# ----------------------------------------------------------------------------- model


def build_classifier(config, num_labels, style, seed=None):
    return modeling.AlbertForClassification(
        config, num_labels, style=style, classifier_dropout=FLAGS.classifier_dropout, seed=seed
    )


def predict_probabilities(predictor, features, batch_size):
    """Class probabilities [N, C] for every example, in the examples' order."""
    outputs = inference.predict(
        predictor, features, batch_size, FLAGS.max_seq_length, FLAGS.fixed_length
    )
    return outputs["probabilities"]


def compute_metrics(probabilities, label_ids, num_labels):
    """accuracy, macro-F1 (mean over classes of per-class F1) and mean cross-entropy.

    Only labelled examples (label_id >= 0) count.
    """
    labelled = label_ids >= 0
    probabilities, label_ids = probabilities[labelled], label_ids[labelled]
    if len(label_ids) == 0:
        return None
    predictions = probabilities.argmax(axis=1)
    f1_scores = []
    for c in range(num_labels):
        true_positive = np.sum((predictions == c) & (label_ids == c))
        predicted, actual = np.sum(predictions == c), np.sum(label_ids == c)
        denominator = predicted + actual
        f1_scores.append(2.0 * true_positive / denominator if denominator else 0.0)
    gold_probability = probabilities[np.arange(len(label_ids)), label_ids]
    return {
        "accuracy": float(np.mean(predictions == label_ids)),
        "macro_f1": float(np.mean(f1_scores)),
        "loss": float(-np.mean(np.log(np.maximum(gold_probability, 1e-12)))),
        "num_examples": int(len(label_ids)),
    }


# ----------------------------------------------------------------------------- outputs


def write_eval_results(output_dir, split, checkpoint_name, global_step, metrics):
    """Append one evaluation to eval_results.txt (readable) and eval_results.jsonl."""
    record = dict(metrics, split=split, checkpoint=checkpoint_name, global_step=int(global_step))
    with open(os.path.join(output_dir, "eval_results.txt"), "a", encoding="utf-8") as f:
        f.write(f"***** Eval results {checkpoint_name} ({split}) *****\n")
        for key in ("accuracy", "macro_f1", "loss", "global_step", "num_examples"):
            f.write(f"{key} = {record[key]}\n")
    training.append_jsonl(os.path.join(output_dir, "eval_results.jsonl"), record)
    logging.info(
        "%s %s: accuracy %.4f, macro_f1 %.4f, loss %.4f (%d examples, step %d)",
        split,
        checkpoint_name,
        metrics["accuracy"],
        metrics["macro_f1"],
        metrics["loss"],
        metrics["num_examples"],
        global_step,
    )


def write_predictions(output_dir, examples, probabilities, label_list, label_names):
    """test_results.tsv (probabilities, as the original) and test_predictions.tsv (readable)."""
    with open(os.path.join(output_dir, "test_results.tsv"), "w", encoding="utf-8") as f:
        for row in probabilities:
            f.write("\t".join(f"{p:.6f}" for p in row) + "\n")
    with open(os.path.join(output_dir, "test_predictions.tsv"), "w", encoding="utf-8") as f:
        f.write("line\ttext_a\ttext_b\tlabel\tprediction\tprediction_name\tprobability\n")
        for example, row in zip(examples, probabilities, strict=True):
            best = int(row.argmax())
            f.write(
                "\t".join(
                    [
                        example.source.rsplit(":", 1)[-1],
                        example.text_a,
                        example.text_b or "",
                        "" if example.label is None else example.label,
                        label_list[best],
                        label_names[best],
                        f"{row[best]:.6f}",
                    ]
                )
                + "\n"
            )


def write_model_info(output_dir, config, label_list, label_names, style):
    """Config, vocab and model_info.json: output_dir alone then serves similarity.py / export."""
    info = {
        "task": "classification",
        "task_name": FLAGS.task_name,
        "labels": list(label_list),
        "label_names": list(label_names),
        "max_seq_length": FLAGS.max_seq_length,
        "do_lower_case": FLAGS.do_lower_case,
        "style": style,
        "init_checkpoint": FLAGS.init_checkpoint,
    }
    checkpoints.write_model_info(output_dir, config, FLAGS.vocab_file, info)


# ----------------------------------------------------------------------------- training


def train(strategy, model, features, evaluate_dev, evaluated_step=None):
    """Fine-tune with the shared loop, evaluating the dev set after every epoch (see
    training.fine_tune); returns the Trainer."""
    return training.fine_tune(
        FLAGS,
        strategy,
        model,
        training.classifier_losses(model),
        classifier_data.TrainingInput(
            features,
            FLAGS.train_batch_size,
            strategy.num_replicas_in_sync,
            FLAGS.max_seq_length,
            FLAGS.fixed_length,
            FLAGS.seed,
        ),
        evaluate_dev,
        evaluated_step=evaluated_step,
    )


# ----------------------------------------------------------------------------- main


def validate_flags():
    """Every flag checked before TensorFlow starts; returns the model config."""
    if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict):
        raise errors.AlbertError(
            "nothing to do: pass at least one of --do_train, --do_eval, --do_predict"
        )
    training.check_training_flags(FLAGS)
    return training.fine_tuning_config(FLAGS)


def check_init_labels(label_list, label_names):
    """A classifier head in --init_checkpoint is trained further, so class i must mean the
    task's label i. Returns the label names to record (the checkpoint's when the task has no
    readable names of its own, e.g. a generic tsv task fine-tuned further from an HF model)."""
    if not FLAGS.init_checkpoint:
        return label_names
    num_labels = checkpoints.checkpoint_heads(FLAGS.init_checkpoint).num_labels
    if not num_labels:
        return label_names
    names = checkpoints.label_names(FLAGS.init_checkpoint)
    shown = f" ({', '.join(names)})" if names else ""
    if num_labels != len(label_list):
        raise errors.AlbertError(
            f"--init_checkpoint {FLAGS.init_checkpoint} is a classifier of {num_labels} "
            f"classes{shown} but task {FLAGS.task_name} has {len(label_list)} "
            f"({', '.join(label_names)}): start from the pretrained model instead"
        )
    if names is None or names in (list(label_list), list(label_names)):
        return label_names
    if sorted(names) in (sorted(label_list), sorted(label_names)):
        raise errors.AlbertError(
            f"--init_checkpoint {FLAGS.init_checkpoint} orders its classes {names} but task "
            f"{FLAGS.task_name} orders them {list(label_list)}: pass --labels={','.join(names)} "
            "(task tsv) so that each class keeps its meaning"
        )
    logging.warning(
        "--init_checkpoint's classes are %s, the task's labels %s: class i is trained as label i",
        names,
        list(label_list),
    )
    return names if list(label_names) == list(label_list) else label_names


def check_sequence_room(processor):
    """A pair task needs [CLS] a [SEP] b [SEP] with one token each at least: 5 positions."""
    needed = 5 if processor.is_pair_task() else 3
    if FLAGS.max_seq_length < needed:
        raise errors.AlbertError(
            f"--max_seq_length={FLAGS.max_seq_length} leaves no room for text: task "
            f"{FLAGS.task_name} needs at least {needed} ([CLS] a [SEP]"
            + (" b [SEP])" if needed == 5 else ")")
        )


def model_for_inference(model, trainer_ran):
    """Load the weights to evaluate/predict with; returns (name, global step) for the results.

    Which checkpoint: checkpoints.inference_checkpoint; here its head is checked.
    """
    path = checkpoints.inference_checkpoint(FLAGS.output_dir, FLAGS.init_checkpoint, trainer_ran)
    if path is None:
        return "final weights", None
    if not checkpoints.checkpoint_heads(path).num_labels:
        raise errors.AlbertError(
            f"{path} has no classifier head (output_weights): it is not fine-tuned; add --do_train"
        )
    checkpoints.load_checkpoint(model, path, allow_missing=("cls/",))
    return os.path.basename(path), checkpoints.global_step_of(path)


def main(argv):
    del argv
    config = validate_flags()
    # The strategy first: multi-worker and TPU runtimes must be set up before other TF ops.
    strategy = training.strategy_from_flags(FLAGS)
    tf.random.set_seed(FLAGS.seed)
    style = checkpoints.resolve_style(config, FLAGS.init_checkpoint, FLAGS.style)
    processor = classifier_data.get_processor(
        FLAGS.task_name,
        data_dir=FLAGS.data_dir,
        strict=FLAGS.strict,
        labels=FLAGS.labels,
        train_file=FLAGS.train_file,
    )
    check_sequence_room(processor)
    label_list = processor.get_labels()
    label_names = check_init_labels(label_list, processor.label_names())
    tokenizer = tokenization.FullTokenizer(FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)
    lock = checkpoints.OutputDirLock(FLAGS.output_dir)
    if training.is_chief(strategy):
        lock.acquire()
    try:
        run(strategy, config, style, processor, label_list, label_names, tokenizer)
    finally:
        lock.release()


def run(strategy, config, style, processor, label_list, label_names, tokenizer):
    """Train / evaluate / predict as the flags say (the caller holds output_dir's lock)."""
    write_model_info(FLAGS.output_dir, config, label_list, label_names, style)
    logging.info(
        "task %s: %d labels %s; %s-style model; init %s",
        FLAGS.task_name,
        len(label_list),
        label_names,
        style,
        FLAGS.init_checkpoint or "NONE (from scratch)",
    )

    with strategy.scope():
        model = build_classifier(config, len(label_list), style, seed=FLAGS.seed)
    predictor = inference.Predictor(model)
    summary = {}

    dev_features = None
    if FLAGS.do_eval:
        dev_examples = read_split(processor, "dev")
        dev_features = to_features(dev_examples, label_list, tokenizer)
    keeper = checkpoints.BestCheckpointKeeper(FLAGS.output_dir, metric="accuracy")

    def evaluate_dev(global_step, checkpoint_name=None):
        if dev_features is None:
            return None
        probabilities = predict_probabilities(predictor, dev_features, FLAGS.eval_batch_size)
        metrics = compute_metrics(probabilities, dev_features.label_ids, len(label_list))
        name = checkpoint_name or f"model.ckpt-{global_step}"
        write_eval_results(FLAGS.output_dir, "dev", name, global_step, metrics)
        if checkpoint_name is None:
            keeper.update(model, global_step, metrics)
        return metrics

    trainer = None
    if FLAGS.do_train:
        train_examples = read_split(processor, "train")
        train_features = to_features(train_examples, label_list, tokenizer)
        trainer = train(strategy, model, train_features, evaluate_dev, keeper.last_evaluated_step)

    name, step = model_for_inference(model, trainer is not None)
    if step is None:
        step = trainer.global_step
    if FLAGS.do_eval:
        if trainer is not None and keeper.best is not None and name == checkpoints.BEST_CHECKPOINT:
            # Evaluated when it was saved (same weights, same dev set): no second pass.
            summary["dev"] = {"accuracy": keeper.best["accuracy"], "global_step": step}
        else:
            summary["dev"] = evaluate_dev(step, checkpoint_name=name)
    if FLAGS.do_predict:
        test_examples = read_split(processor, "test")
        test_features = to_features(test_examples, label_list, tokenizer)
        probabilities = predict_probabilities(predictor, test_features, FLAGS.predict_batch_size)
        write_predictions(FLAGS.output_dir, test_examples, probabilities, label_list, label_names)
        logging.info(
            "wrote %d predictions to %s/test_results.tsv and test_predictions.tsv",
            len(test_examples),
            FLAGS.output_dir,
        )
        metrics = compute_metrics(probabilities, test_features.label_ids, len(label_list))
        if metrics is not None:
            write_eval_results(FLAGS.output_dir, "test", name, step, metrics)
            summary["test"] = metrics
    for split, metrics in summary.items():
        print(f"{split} accuracy ({name}, step {step}): {metrics['accuracy']:.4f}", flush=True)
    if summary:
        with open(os.path.join(FLAGS.output_dir, "final_results.json"), "w") as f:
            json.dump(dict(summary, checkpoint=name, global_step=step), f, indent=2)


if __name__ == "__main__":
    define_flags()
    errors.run_main(main)
