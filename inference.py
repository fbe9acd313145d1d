"""Batched prediction, shared by run_classifier.py --do_eval/--do_predict, similarity.py and the
exporters' self-checks.

* `Predictor`: a loaded model (a tf.function traced once for [None, None] inputs) or a TFLite
  file run by LiteRT, with one call: a padded batch dict in, a dict of NumPy outputs out.
* `predict`: every example of a `classifier_data.Features` (or every window of a
  `ner_data.NerFeatures`), in length-sorted batches padded by the same TensorFlow pipeline that
  training reads (`classifier_data.make_dataset`), outputs put back in the examples' order.
  Per-token outputs (named in `token_outputs`) come back padded to max_seq_length.
* `classifier_probabilities`, `token_classifier_outputs`: what every export of a classifier /
  token classifier (NER) returns, one definition for run_*.py, SavedModel and TFLite.
* `load_classifier`: a fine-tuned classifier from a model directory or checkpoint.
* `SavedModelTextPredictor` and `predict_texts`: raw text pairs through the `classify_text`
  signature of a SavedModel from export_savedmodel.py (the tokenizer is inside it).
"""

import json
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

import checkpoints
import classifier_data
import modeling
from errors import AlbertError

INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")
TFLITE_SIGNATURE = "serving_default"


class Predictor:
    """A TensorFlow model as a function: padded int32 batch -> {name: NumPy array}.

    `outputs(model, *inputs)` returns the named outputs, the inputs being the batch's
    `input_names` columns ([batch, seq] int32 each); the default turns a classifier's logits
    into `probabilities`.
    """

    fixed_length = None  # TFLite files may have a static sequence length

    def __init__(self, model, outputs=None, input_names=INPUT_NAMES):
        self.model = model
        self.input_names = tuple(input_names)
        outputs = outputs or classifier_probabilities
        spec = tf.TensorSpec([None, None], tf.int32)

        @tf.function(input_signature=[spec] * len(self.input_names))
        def run(*inputs):
            return outputs(model, *inputs)

        self._run = run

    def __call__(self, batch):
        outputs = self._run(*(tf.convert_to_tensor(batch[name]) for name in self.input_names))
        return {name: value.numpy() for name, value in outputs.items()}


def classifier_probabilities(model, input_ids, input_mask, segment_ids):
    """A classifier's softmax over its labels, the `probabilities` of every export."""
    logits = model(input_ids, input_mask, segment_ids, training=False)
    return {"probabilities": tf.nn.softmax(logits, axis=-1)}


def serving_label_mask(input_mask):
    """The positions a token classifier tags when only input_mask is known: every real token
    but the first ([CLS]) and the last ([SEP]) of each row.

    This is ner_data's label_mask for rows `[CLS] tokens [SEP]` with character units, except
    for the rare character that becomes several pieces (e.g. "ǆ" -> "d", "##z"), whose later
    pieces are tagged here too.
    """
    input_mask = tf.cast(input_mask, tf.int32)
    lengths = tf.reduce_sum(input_mask, axis=1, keepdims=True)
    positions = tf.range(tf.shape(input_mask)[1])[tf.newaxis]
    inside = (positions > 0) & (positions < lengths - 1)
    return input_mask * tf.cast(inside, tf.int32)


def token_classifier_outputs(
    model, input_ids, input_mask, segment_ids, label_mask=None, decode_row_by_row=False
):
    """A token classifier's `tag_ids` [B, S] int32 (0 outside label_mask) and per-token
    `probabilities` [B, S, K] (softmax of the logits; for a CRF, of its emission scores).

    tag_ids are `model.decode`: argmax for a softmax head, Viterbi with the tag scheme's
    constraints for a CRF. label_mask defaults to `serving_label_mask(input_mask)`.
    decode_row_by_row (when the batch size is not static) decodes one row at a time in a
    while loop: the same tags, and the only form of the CRF's tf.scan that TFLite builtins
    express for a dynamic batch (its TensorList elements need a static shape, here [1, K];
    with a static batch, e.g. TFLite's [1, S], the batched scan has one already).
    """
    logits = model(input_ids, input_mask, segment_ids, training=False)
    if label_mask is None:
        label_mask = serving_label_mask(input_mask)
    if decode_row_by_row and logits.shape[0] is None:
        tag_ids = _decode_rows(model, logits, label_mask)
    else:
        tag_ids = model.decode(logits, label_mask)
    return {"tag_ids": tag_ids, "probabilities": tf.nn.softmax(logits, axis=-1)}


def _decode_rows(model, logits, label_mask):
    batch, length = tf.shape(logits)[0], tf.shape(logits)[1]
    num_labels = logits.shape[-1]

    def decode_row(row, decoded):
        row_logits = tf.slice(logits, [row, 0, 0], [1, length, num_labels])
        row_mask = tf.slice(label_mask, [row, 0], [1, length])
        return row + 1, tf.concat([decoded, model.decode(row_logits, row_mask)], 0)

    _, tag_ids = tf.while_loop(
        lambda row, _: row < batch,
        decode_row,
        (tf.constant(0), tf.zeros([0, length], tf.int32)),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, None])),
    )
    tag_ids.set_shape(logits.shape[:2])  # static again when the input's shape is
    return tag_ids


class TflitePredictor:
    """A .tflite file (export_tflite.py) run by LiteRT, called like `Predictor`.

    Inputs are matched by name (`input_ids` or e.g. `serving_default_input_ids:0`); a file
    with a static batch of 1 is called row by row.
    """

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        if not os.path.isfile(path):
            raise AlbertError(f"TFLite file not found: {path}")
        try:
            interpreter = Interpreter(model_path=os.fspath(path), num_threads=num_threads)
        except ValueError as e:
            raise AlbertError(f"{path}: not a readable TFLite model ({e})") from None
        signatures = interpreter.get_signature_list()
        if not signatures:
            raise AlbertError(f"{path} has no signature; export it with export_tflite.py")
        key = TFLITE_SIGNATURE if TFLITE_SIGNATURE in signatures else next(iter(signatures))
        self.path = path
        self.runner = interpreter.get_signature_runner(key)
        details = self.runner.get_input_details()
        self.input_names = {want: self._match(details, want) for want in INPUT_NAMES}
        shape = details[self.input_names["input_ids"]]["shape_signature"]
        self.fixed_batch = int(shape[0]) if shape[0] > 0 else None
        self.fixed_length = int(shape[1]) if shape[1] > 0 else None
        self.dtypes = {want: details[name]["dtype"] for want, name in self.input_names.items()}

    def _match(self, details, want):
        for name in details:
            if name == want or name.split(":")[0].endswith(want):
                return name
        raise AlbertError(
            f"{self.path}: no input named {want} (inputs: {', '.join(details)}); "
            "export it with export_tflite.py"
        )

    def __call__(self, batch):
        rows = len(batch["input_ids"])
        step = self.fixed_batch or rows
        parts = []
        for start in range(0, rows, step):
            inputs = {
                name: np.asarray(batch[want][start : start + step]).astype(self.dtypes[want])
                for want, name in self.input_names.items()
            }
            parts.append(self.runner(**inputs))
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def predict(predictor, features, batch_size, max_seq_length, fixed_length=False, token_outputs=()):
    """{output name: array [N, ...]} for every example of `features`, in their order.

    Batches are formed from examples of similar length (fewer padded positions), padded as
    in training, and mapped back by index. A predictor with a static sequence length gets
    batches of exactly that length. The outputs named in `token_outputs` have one value per
    token ([batch, seq, ...], seq varying from batch to batch): they are returned as
    [N, max_seq_length, ...] arrays, zero beyond each batch's padded length, so that row i
    position p is token p of example i whatever batch it ran in.
    """
    if predictor.fixed_length:
        fixed_length, max_seq_length = True, predictor.fixed_length
    batches = classifier_data.make_batches(features.lengths, batch_size, shuffle=False)
    dataset = classifier_data.make_dataset(features, batches, max_seq_length, fixed_length)
    results = {}
    start = time.time()
    for indices, batch in zip(batches, dataset, strict=True):
        for name, value in predictor(batch).items():
            per_token = name in token_outputs
            if name not in results:
                shape = (max_seq_length,) + value.shape[2:] if per_token else value.shape[1:]
                results[name] = np.zeros((len(features),) + shape, value.dtype)
            if per_token:
                results[name][indices, : value.shape[1]] = value
            else:
                results[name][indices] = value
    elapsed = max(time.time() - start, 1e-9)
    logging.info(
        "predicted %d examples in %.1fs (%.0f examples/s)",
        len(features),
        elapsed,
        len(features) / elapsed,
    )
    return results


def load_classifier(ckpt_path, config, num_labels=None, style=None):
    """A fine-tuned AlbertForClassification and the prefix it was loaded from.

    `ckpt_path` may be a run_classifier.py output directory (its best, else latest
    checkpoint), a checkpoint prefix or a Hugging Face AlbertForSequenceClassification
    directory; the classifier head must be in it. `config`: a modeling.AlbertConfig.
    """
    path = checkpoints.resolve_checkpoint_path(ckpt_path)
    heads = checkpoints.checkpoint_heads(path)
    if not heads.num_labels:
        raise AlbertError(
            f"{path} has no classifier head (output_weights): it is not a fine-tuned "
            "classifier; fine-tune it with run_classifier.py first"
        )
    if heads.token_level:
        raise AlbertError(
            f"{path} is a token classifier (NER, run_ner.py), not a sentence classifier; "
            "export it with export_savedmodel.py (signature token_classifier)"
        )
    if num_labels is not None and heads.num_labels != num_labels:
        raise AlbertError(
            f"{path} has {heads.num_labels} classes but {num_labels} labels were expected"
        )
    style = checkpoints.resolve_style(config, path, style)
    model = modeling.AlbertForClassification(
        config, heads.num_labels, style=style, classifier_dropout=0.0
    )
    checkpoints.load_checkpoint(model, path, allow_missing=("cls/",))
    logging.info("classifier: %s (%s style, %d classes)", path, style, heads.num_labels)
    return model, path


class SavedModelTextPredictor:
    """A SavedModel's raw-text classifier: lists of texts in, {name: NumPy array} out.

    Needs only the SavedModel directory (export_savedmodel.py with a vocab): tokenizer, vocab
    and label names are inside it, so no vocab file or Python tokenizer is involved.
    `labels` / `label_names` are the classes in the order of the probabilities' columns.
    """

    def __init__(self, export_dir, signature="classify_text"):
        export_dir = os.fspath(export_dir)
        if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
            raise AlbertError(f"{export_dir} is not a SavedModel directory (no saved_model.pb)")
        loaded = tf.saved_model.load(export_dir)
        if signature not in loaded.signatures:
            raise AlbertError(
                f"{export_dir} has no {signature} signature (it has "
                f"{', '.join(sorted(loaded.signatures))}): export a fine-tuned classifier with "
                "export_savedmodel.py and its vocab (--vocab_file, or the run's output directory)"
            )
        self.export_dir = export_dir
        self._loaded = loaded  # keeps the signature's variables alive
        self._signature = loaded.signatures[signature]
        info = json.loads(loaded.text_info_json.numpy().decode("utf-8"))
        self.labels = info["labels"]
        self.label_names = info["label_names"]
        self.max_seq_length = info["max_seq_length"]

    def __call__(self, texts_a, texts_b=None):
        """Outputs for one batch; texts_b None (or "" per example) means single texts."""
        if texts_b is None:
            texts_b = [""] * len(texts_a)
        outputs = self._signature(
            text_a=tf.constant(list(texts_a), tf.string),
            text_b=tf.constant(list(texts_b), tf.string),
        )
        return {name: value.numpy() for name, value in outputs.items()}


def predict_texts(predictor, texts_a, texts_b=None, batch_size=32):
    """{output name: array [N, ...]} of a SavedModelTextPredictor, in the texts' order.

    Batches hold texts of similar length (by characters: less padding), as `predict` does.
    """
    if texts_b is None:
        texts_b = [""] * len(texts_a)
    if len(texts_a) != len(texts_b):
        raise AlbertError(f"{len(texts_a)} texts_a but {len(texts_b)} texts_b")
    if not texts_a:
        return predictor([], [])  # the signature answers an empty batch with empty outputs
    order = sorted(range(len(texts_a)), key=lambda i: len(texts_a[i]) + len(texts_b[i]))
    results = {}
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        outputs = predictor([texts_a[i] for i in indices], [texts_b[i] for i in indices])
        for name, value in outputs.items():
            if name not in results:
                results[name] = np.empty((len(order),) + value.shape[1:], value.dtype)
            results[name][indices] = value
    return results
