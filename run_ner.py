"""Chinese named-entity recognition with ALBERT: fine-tune, evaluate and predict.

    python run_ner.py --task_name=cluener --data_dir=../shared/data/cluener \
      --vocab_file=../shared/data/vocab.txt --bert_config_file=configs/albert_config_tiny.json \
      --init_checkpoint=prev_trained_model/albert_tiny/albert_model.ckpt \
      --output_dir=output/cluener --do_train --do_eval --do_predict \
      --max_seq_length=128 --train_batch_size=32 --learning_rate=1e-4 --num_train_epochs=3

Tasks (--task_name):
  * cluener: CLUENER2020 JSON lines, train.json / dev.json / test.json
    (`{"text": ..., "label": {type: {entity: [[start, end], ...]}}}`, inclusive offsets).
  * bio: one `character tag` line per token and a blank line between sentences, in
    train.txt / dev.txt / test.txt; tags in --tag_scheme (BIO, BIOES or BMES).

Heads: a softmax over the tags of every token (the default; loss = token cross-entropy over
the labelled tokens), or --use_crf, a linear-chain CRF (loss = the sequences' negative
log-likelihood; decoding = Viterbi restricted to the sequences the tag scheme allows).

The flow is run_classifier.py's: the strategy first, output_dir locked, model_info.json
(task "token_classification", the tags, their scheme, use_crf, max_seq_length) written next
to the checkpoints, the shared training loop (training.py) from --init_checkpoint (a released
checkpoint of either style, a run_pretraining.py output directory, or random weights with a
warning), the dev set scored after every epoch (entity-level micro F1, as seqeval), the best
dev F1 kept as model.ckpt-best and used for prediction. How text becomes windows of tokens
and back (character-exact entities, sentences longer than max_seq_length cut into
overlapping windows and merged) is ner_data.py's.

Outputs in --output_dir: eval_results.txt (`precision = `, `recall = `, `f1 = ` and a line per
entity type for every evaluation) and eval_results.jsonl; test_predictions.txt (bio: every
line of test.txt with the predicted tag appended as one more column, blank lines kept;
cluener: `text<TAB>entity/type[start,end] ...`) and, for cluener, cluener_predict.json (the
CLUENER submission: `{"id": n, "label": {...}}` per line); final_results.json.
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
import ner_data
import tokenization
import training

FLAGS = flags.FLAGS

# Candidate file names of each split, first existing wins (--train_file etc. override).
TASK_FILES = {
    "cluener": {"train": ("train.json",), "dev": ("dev.json",), "test": ("test.json",)},
    "bio": {
        split: (f"{split}.txt", f"{split}.bio", f"{split}.char.bmes", f"example.{split}")
        for split in ("train", "dev", "test")
    },
}
SPLIT_FLAGS = {"train": "train_file", "dev": "dev_file", "test": "test_file"}
CRF_VARIABLES = ("output_transitions", "output_start_transitions", "output_end_transitions")
AVERAGES = ("micro avg", "macro avg", "weighted avg")  # entity_scores rows that are not types

# ----------------------------------------------------------------------------- flags


def define_flags(flag_values=FLAGS):
    """Define the flags (not on import: tests define them on their own FlagValues)."""
    fv = flag_values
    training.define_fine_tuning_flags(fv)
    flags.DEFINE_string("task_name", None, "cluener or bio (see the docstring).", flag_values=fv)
    flags.DEFINE_string(
        "tag_scheme",
        "BIO",
        "BIO, BIOES or BMES: the scheme of the bio files and of the tags the model predicts.",
        flag_values=fv,
    )
    flags.DEFINE_list(
        "labels",
        None,
        "The tags (O,B-X,I-X,... in --tag_scheme; their order fixes the tag ids) or just the "
        "entity types (X,Y). Default: the types of the train file.",
        flag_values=fv,
    )
    flags.DEFINE_bool(
        "use_crf", False, "A CRF over the tags instead of a per-token softmax.", flag_values=fv
    )
    flags.DEFINE_float(
        "crf_learning_rate",
        None,
        "Peak learning rate of the CRF's transitions (default: --learning_rate).",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "window_stride",
        None,
        "Tokens between the starts of the windows of a long sentence (default: half a window).",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "units",
        "char",
        "Label unit: char (every character; entities may start inside a Latin word) or word.",
        flag_values=fv,
    )
    flags.mark_flags_as_required(["task_name", "output_dir"], flag_values=fv)


def validate_flags():
    """Every flag checked before TensorFlow starts; returns the model config."""
    if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict):
        raise errors.AlbertError(
            "nothing to do: pass at least one of --do_train, --do_eval, --do_predict"
        )
    # Strings checked here, not absl enums: a mistake is then one `error:` line (exit 2).
    FLAGS.task_name = FLAGS.task_name.lower()
    if FLAGS.task_name not in TASK_FILES:
        raise errors.AlbertError(
            f"unknown --task_name {FLAGS.task_name!r}: use {' or '.join(sorted(TASK_FILES))}"
        )
    FLAGS.tag_scheme = ner_data.check_scheme(FLAGS.tag_scheme)
    if FLAGS.units not in ner_data.UNITS:
        raise errors.AlbertError(
            f"unknown --units {FLAGS.units!r}: use {' or '.join(ner_data.UNITS)}"
        )
    training.check_training_flags(FLAGS)
    config = training.fine_tuning_config(FLAGS)
    if FLAGS.max_seq_length < 3:
        raise errors.AlbertError(
            f"--max_seq_length={FLAGS.max_seq_length} leaves no room for text ([CLS] x [SEP])"
        )
    if FLAGS.window_stride is not None and not 1 <= FLAGS.window_stride <= FLAGS.max_seq_length - 2:
        raise errors.AlbertError(
            f"--window_stride must be in 1..{FLAGS.max_seq_length - 2} (max_seq_length - 2), "
            f"got {FLAGS.window_stride}"
        )
    if FLAGS.crf_learning_rate is not None:
        if not FLAGS.use_crf:
            raise errors.AlbertError("--crf_learning_rate needs --use_crf")
        if not FLAGS.crf_learning_rate >= 0 or (
            FLAGS.crf_learning_rate and not FLAGS.learning_rate
        ):
            raise errors.AlbertError(
                "--crf_learning_rate must be >= 0, with a positive --learning_rate"
            )
    return config


# ----------------------------------------------------------------------------- data


def split_path(split):
    """The file of `split`: its --<split>_file flag, else the task's first file in --data_dir."""
    explicit = getattr(FLAGS, SPLIT_FLAGS[split])
    if explicit:
        return explicit
    if not FLAGS.data_dir:
        raise errors.AlbertError(f"pass --data_dir (or --{SPLIT_FLAGS[split]}) to read {split}")
    candidates = TASK_FILES[FLAGS.task_name][split]
    for name in candidates:
        path = os.path.join(FLAGS.data_dir, name)
        if os.path.isfile(path):
            return path
    raise errors.AlbertError(
        f"no {split} file in {FLAGS.data_dir} (looked for {', '.join(candidates)}; pass "
        f"--{SPLIT_FLAGS[split]} to name it)"
    )


def read_split(split, scheme, tags=None):
    """(examples, path) of one split; what was skipped, malformed or corrected is logged.

    With `tags` known, a tag (bio) or entity type (cluener) outside them is a bad row.
    """
    path = split_path(split)
    if FLAGS.task_name == "cluener":
        types = None if tags is None else {ner_data.split_tag(t)[1] for t in tags} - {""}
        examples, report = ner_data.read_cluener(path, strict=FLAGS.strict, types=types)
    else:
        examples, report = ner_data.read_bio(path, scheme, labels=tags, strict=FLAGS.strict)
    log = logging.warning if report.num_malformed or report.corrected else logging.info
    log("%s: %s", split, report.summary())
    if not examples:
        raise errors.AlbertError(f"{path}: no usable {split} sentences ({report.summary()})")
    return examples, path


def to_features(split, examples, tokenizer, tags, scheme):
    """Tokens and windows of a split; the windows, split sentences and lost entities logged."""
    start = time.time()
    features = ner_data.convert_examples_to_features(
        examples,
        tokenizer,
        tags,
        scheme,
        max_seq_length=FLAGS.max_seq_length,
        window_stride=FLAGS.window_stride,
        units=FLAGS.units,
    )
    report = features.report
    log = logging.warning if report.lost else logging.info
    log("%s: %s (%.1fs)", split, report.summary(), time.time() - start)
    return features


# ----------------------------------------------------------------------------- tags and model


def tags_from_labels(labels, scheme):
    """--labels as tags of the scheme (kept in order), or entity types (all their tags)."""
    if any(ner_data.is_scheme_tag(label, scheme) for label in labels):
        return ner_data.tag_list_from_labels(labels, scheme)
    return ner_data.tag_list([label.strip() for label in labels if label.strip()], scheme)


def tags_from_flag():
    """The tags --labels fixes before any file is read (None: from the train file)."""
    return tags_from_labels(FLAGS.labels, FLAGS.tag_scheme) if FLAGS.labels else None


def existing_model_info():
    """(model_info, its directory) of the run_ner.py model to evaluate: --output_dir's, else
    --init_checkpoint's; (None, None) if neither has one."""
    candidates = [FLAGS.output_dir]
    if FLAGS.init_checkpoint:
        init = FLAGS.init_checkpoint
        candidates.append(init if os.path.isdir(init) else os.path.dirname(init))
    for directory in candidates:
        info = checkpoints.read_model_info(directory) if os.path.isdir(directory) else None
        if info and info.get("task") == checkpoints.TOKEN_CLASSIFICATION:
            return info, directory
    return None, None


def tagging_setup(train_examples):
    """(tags, scheme): from --labels, else the train file's entity types, else (evaluation
    only) the model_info.json of the model evaluated."""
    scheme = FLAGS.tag_scheme
    if FLAGS.labels:
        return tags_from_labels(FLAGS.labels, scheme), scheme
    if train_examples is not None:
        types = ner_data.entity_types(train_examples)
        if not types:
            raise errors.AlbertError(
                f"{split_path('train')}: no entity at all in the training data; nothing to learn"
            )
        return ner_data.tag_list(types, scheme), scheme
    info, directory = existing_model_info()
    if info is None:
        raise errors.AlbertError(
            "without --do_train the tags come from --labels or from the model_info.json of a "
            "run_ner.py --output_dir / --init_checkpoint; neither has one"
        )
    stored = info.get("tag_scheme", "BIO")
    if FLAGS["tag_scheme"].present and stored != scheme:
        raise errors.AlbertError(
            f"--tag_scheme={scheme} but the model in {directory} predicts {stored} tags; drop "
            "--tag_scheme (or retrain)"
        )
    return list(info["labels"]), stored


def check_resumable(tags, scheme, use_crf):
    """Refuse an output_dir holding checkpoints of a run with other tags or another head."""
    info = (
        checkpoints.read_model_info(FLAGS.output_dir) if os.path.isdir(FLAGS.output_dir) else None
    )
    if not info or FLAGS.overwrite_output_dir or not checkpoints.has_run_files(FLAGS.output_dir):
        return
    earlier = (info.get("labels"), info.get("tag_scheme"), info.get("use_crf"))
    if info.get("task") != checkpoints.TOKEN_CLASSIFICATION or earlier != (
        list(tags),
        scheme,
        use_crf,
    ):
        raise errors.AlbertError(
            f"{FLAGS.output_dir} holds a run with other tags or head (tags {earlier[0]}, "
            f"scheme {earlier[1]}, use_crf {earlier[2]}); use another --output_dir or pass "
            "--overwrite_output_dir"
        )


def check_init_checkpoint(num_tags):
    """An --init_checkpoint with a root head must be a token classifier with as many tags."""
    heads = checkpoints.checkpoint_heads(FLAGS.init_checkpoint)
    if heads.num_labels and not heads.token_level:
        raise errors.AlbertError(
            f"--init_checkpoint={FLAGS.init_checkpoint} is a sentence classifier "
            "(run_classifier.py); start NER from a pretrained checkpoint instead"
        )
    if heads.num_labels and heads.num_labels != num_tags:
        raise errors.AlbertError(
            f"--init_checkpoint={FLAGS.init_checkpoint} tags {heads.num_labels} labels but this "
            f"run has {num_tags}; pass --labels in its order or start from a pretrained model"
        )


def inference_checkpoint(trainer_ran):
    """The checkpoint to evaluate/predict with, or None for the weights in memory.

    Which checkpoint: checkpoints.inference_checkpoint; here its head is checked.
    """
    path = checkpoints.inference_checkpoint(FLAGS.output_dir, FLAGS.init_checkpoint, trainer_ran)
    if path is None:
        return None
    heads = checkpoints.checkpoint_heads(path)
    if not heads.num_labels:
        raise errors.AlbertError(
            f"{path} has no tagging head (output_weights): it is not fine-tuned; add --do_train"
        )
    if not heads.token_level:
        raise errors.AlbertError(
            f"{path} is a sentence classifier (run_classifier.py), not a run_ner.py model"
        )
    return path


def build_model(config, tags, scheme, use_crf, style, strategy):
    """The token classifier; a CRF decodes under the scheme's constraints."""
    allowed = modeling.crf_allowed_transitions(tags, scheme) if use_crf else None
    with strategy.scope():
        return modeling.AlbertForTokenClassification(
            config,
            len(tags),
            style=style,
            classifier_dropout=FLAGS.classifier_dropout,
            use_crf=use_crf,
            allowed_transitions=allowed,
            seed=FLAGS.seed,
        )


def write_model_info(config, tags, scheme, use_crf, style):
    """Config, vocab and model_info.json: output_dir alone then serves the exporters."""
    info = {
        "task": checkpoints.TOKEN_CLASSIFICATION,
        "task_name": FLAGS.task_name,
        "labels": list(tags),
        "tag_scheme": scheme,
        "use_crf": use_crf,
        "units": FLAGS.units,
        "max_seq_length": FLAGS.max_seq_length,
        "window_stride": FLAGS.window_stride,
        "do_lower_case": FLAGS.do_lower_case,
        "style": style,
        "init_checkpoint": FLAGS.init_checkpoint,
    }
    checkpoints.write_model_info(FLAGS.output_dir, config, FLAGS.vocab_file, info)


# ----------------------------------------------------------------------------- predict, score


def tag_ids_output(model, input_ids, input_mask, segment_ids, label_mask):
    """What evaluation needs: the decoded tags at the windows' own label_mask positions."""
    outputs = inference.token_classifier_outputs(
        model, input_ids, input_mask, segment_ids, label_mask
    )
    return {"tag_ids": outputs["tag_ids"]}


def make_predictor(model):
    return inference.Predictor(
        model, outputs=tag_ids_output, input_names=inference.INPUT_NAMES + ("label_mask",)
    )


def predict_entities(predictor, features, batch_size):
    """Character entities predicted for every example (windows merged), in their order."""
    if len(features):
        outputs = inference.predict(
            predictor,
            features,
            batch_size,
            FLAGS.max_seq_length,
            FLAGS.fixed_length,
            token_outputs=("tag_ids",),
        )
        window_tags = outputs["tag_ids"]
    else:  # every sentence is empty: nothing to run
        window_tags = np.zeros([0, FLAGS.max_seq_length], np.int32)
    return ner_data.predict_entities(features, window_tags)


def score(examples, predictions):
    """Entity-level precision / recall / F1 (seqeval's) of the labelled examples, or None.

    -> (metrics, report): metrics has the micro averages as precision, recall, f1 and every
    type's scores under per_type; report is ner_data.entity_scores' full table.
    """
    labelled = [i for i, e in enumerate(examples) if e.entities is not None]
    if not labelled:
        return None, None
    report = ner_data.entity_scores(
        [examples[i].entities for i in labelled], [predictions[i] for i in labelled]
    )
    micro = report["micro avg"]
    metrics = {
        "precision": micro["precision"],
        "recall": micro["recall"],
        "f1": micro["f1-score"],
        "num_sentences": len(labelled),
        "num_entities": int(micro["support"]),
        "per_type": {
            name: {
                "precision": row["precision"],
                "recall": row["recall"],
                "f1": row["f1-score"],
                "support": int(row["support"]),
            }
            for name, row in report.items()
            if name not in AVERAGES
        },
    }
    return metrics, report


def write_eval_results(split, checkpoint_name, global_step, metrics, report):
    """Append one evaluation to eval_results.txt (readable) and eval_results.jsonl."""
    record = dict(metrics, split=split, checkpoint=checkpoint_name, global_step=int(global_step))
    with open(os.path.join(FLAGS.output_dir, "eval_results.txt"), "a", encoding="utf-8") as f:
        f.write(f"***** Eval results {checkpoint_name} ({split}) *****\n")
        for key in ("precision", "recall", "f1", "global_step", "num_sentences", "num_entities"):
            f.write(f"{key} = {record[key]}\n")
        for name, row in metrics["per_type"].items():
            f.write(
                f"{name}: precision = {row['precision']:.4f}, recall = {row['recall']:.4f}, "
                f"f1 = {row['f1']:.4f}, support = {row['support']}\n"
            )
    with open(os.path.join(FLAGS.output_dir, "eval_results.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
    logging.info(
        "%s %s (step %d): precision %.4f, recall %.4f, f1 %.4f over %d sentences\n%s",
        split,
        checkpoint_name,
        global_step,
        metrics["precision"],
        metrics["recall"],
        metrics["f1"],
        metrics["num_sentences"],
        ner_data.format_scores(report),
    )


def write_predictions(examples, source_path, predictions, scheme):
    """bio: test.txt with a predicted-tag column; cluener: the submission and a readable file."""
    readable = os.path.join(FLAGS.output_dir, "test_predictions.txt")
    if FLAGS.task_name == "bio":
        unpredicted = ner_data.write_conll(readable, source_path, examples, predictions, scheme)
        if unpredicted:
            logging.warning(
                "%d token lines of skipped (malformed) sentences got the tag O in %s",
                unpredicted,
                readable,
            )
        written = [readable]
    else:
        submission = os.path.join(FLAGS.output_dir, "cluener_predict.json")
        ner_data.write_cluener(submission, examples, predictions)
        ner_data.write_readable(readable, examples, predictions)
        written = [submission, readable]
    logging.info("wrote the predictions of %d sentences to %s", len(examples), ", ".join(written))


# ----------------------------------------------------------------------------- training


def train(strategy, model, features, evaluate_dev):
    """Fine-tune with the shared loop, evaluating the dev set after every epoch (see
    training.fine_tune); returns the Trainer."""
    multipliers = {}
    if model.use_crf and FLAGS.crf_learning_rate is not None:
        factor = FLAGS.crf_learning_rate / FLAGS.learning_rate
        multipliers = {name: factor for name in CRF_VARIABLES}
    return training.fine_tune(
        FLAGS,
        strategy,
        model,
        training.token_classifier_losses(model),
        classifier_data.TrainingInput(
            features,
            FLAGS.train_batch_size,
            strategy.num_replicas_in_sync,
            FLAGS.max_seq_length,
            FLAGS.fixed_length,
            FLAGS.seed,
        ),
        evaluate_dev,
        learning_rate_multipliers=multipliers,
        what="windows",
    )


# ----------------------------------------------------------------------------- main


def main(argv):
    del argv
    config = validate_flags()
    # The strategy first: multi-worker and TPU runtimes must be set up before other TF ops.
    strategy = training.strategy_from_flags(FLAGS)
    tf.random.set_seed(FLAGS.seed)
    tokenizer = tokenization.FullTokenizer(FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)
    lock = checkpoints.OutputDirLock(FLAGS.output_dir)
    if training.is_chief(strategy):
        lock.acquire()
    try:
        run(strategy, config, tokenizer)
    finally:
        lock.release()


def run(strategy, config, tokenizer):
    """Train / evaluate / predict as the flags say (the caller holds output_dir's lock)."""
    train_examples = None
    if FLAGS.do_train:
        train_examples, _ = read_split("train", FLAGS.tag_scheme, tags_from_flag())
        weights_from = FLAGS.init_checkpoint
    else:  # evaluate / predict a trained model
        weights_from = inference_checkpoint(trainer_ran=False)
    tags, scheme = tagging_setup(train_examples)
    if FLAGS.do_train:
        use_crf = FLAGS.use_crf
        if FLAGS.init_checkpoint and not checkpoints.latest_checkpoint(FLAGS.output_dir):
            check_init_checkpoint(len(tags))
        check_resumable(tags, scheme, use_crf)
    else:  # the model's own head decides
        heads = checkpoints.checkpoint_heads(weights_from)
        use_crf = heads.crf
        if heads.num_labels != len(tags):
            raise errors.AlbertError(
                f"{weights_from} tags {heads.num_labels} labels but {len(tags)} are given "
                "(--labels); drop --labels to use the model's own"
            )
    style = checkpoints.resolve_style(config, weights_from, FLAGS.style)
    write_model_info(config, tags, scheme, use_crf, style)
    logging.info(
        "task %s: %d tags (%s) %s; %s-style %s model; init %s",
        FLAGS.task_name,
        len(tags),
        scheme,
        tags,
        style,
        "CRF" if use_crf else "softmax",
        FLAGS.init_checkpoint or "NONE (from scratch)",
    )
    model = build_model(config, tags, scheme, use_crf, style, strategy)
    predictor = make_predictor(model)
    summary = {}

    dev = None
    if FLAGS.do_eval:
        dev_examples, _ = read_split("dev", scheme, tags)
        dev = (dev_examples, to_features("dev", dev_examples, tokenizer, tags, scheme))
    keeper = checkpoints.BestCheckpointKeeper(FLAGS.output_dir, metric="f1")

    def evaluate_dev(global_step, checkpoint_name=None):
        if dev is None:
            return None
        examples, features = dev
        predictions = predict_entities(predictor, features, FLAGS.eval_batch_size)
        metrics, report = score(examples, predictions)
        if metrics is None:
            raise errors.AlbertError(f"{split_path('dev')}: the dev file has no labels to score")
        name = checkpoint_name or f"model.ckpt-{global_step}"
        write_eval_results("dev", name, global_step, metrics, report)
        if checkpoint_name is None:
            keeper.update(model, global_step, metrics)
        return metrics

    trainer = None
    if FLAGS.do_train:
        features = to_features("train", train_examples, tokenizer, tags, scheme)
        trainer = train(strategy, model, features, evaluate_dev)

    path = inference_checkpoint(trainer is not None)
    if path is None:
        name, step = "final weights", trainer.global_step
    else:
        checkpoints.load_checkpoint(model, path, allow_missing=("cls/",))
        name, step = os.path.basename(path), checkpoints.global_step_of(path)
    if FLAGS.do_eval:
        if trainer is not None and keeper.best is not None and name == checkpoints.BEST_CHECKPOINT:
            # Evaluated when it was saved (same weights, same dev set): no second pass.
            records = _read_records("dev", step)
            summary["dev"] = records[-1] if records else dict(keeper.best)
        else:
            summary["dev"] = evaluate_dev(step, checkpoint_name=name)
    if FLAGS.do_predict:
        test_examples, test_path = read_split("test", scheme, tags)
        test_features = to_features("test", test_examples, tokenizer, tags, scheme)
        predictions = predict_entities(predictor, test_features, FLAGS.predict_batch_size)
        write_predictions(test_examples, test_path, predictions, scheme)
        metrics, report = score(test_examples, predictions)
        if metrics is not None:
            write_eval_results("test", name, step, metrics, report)
            summary["test"] = metrics
    for split, metrics in summary.items():
        print(f"{split} f1 ({name}, step {step}): {metrics['f1']:.4f}", flush=True)
    if summary:
        with open(os.path.join(FLAGS.output_dir, "final_results.json"), "w") as f:
            json.dump(dict(summary, checkpoint=name, global_step=step), f, indent=2)


def _read_records(split, step):
    """The eval_results.jsonl records of one split at one step (the best's full scores)."""
    path = os.path.join(FLAGS.output_dir, "eval_results.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if r["split"] == split and r["global_step"] == step]


if __name__ == "__main__":
    define_flags()
    errors.run_main(main)
