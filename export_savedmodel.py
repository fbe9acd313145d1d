"""Export an albert_zh checkpoint (either style) as a TF2 SavedModel for serving.

The SavedModel has these signatures (all int32 inputs of shape [batch, seq], both dynamic):
  * serving_default(input_ids, input_mask, segment_ids)
        -> sequence_output [batch, seq, hidden], pooled_output [batch, hidden]   (float32)
  * pretraining(input_ids, input_mask, segment_ids, masked_lm_positions [batch, P])
        -> masked_lm_log_probs [batch, P, vocab] (log-softmax), sentence_order_logits [batch, 2]
        (only when the checkpoint has the `cls/` pretraining heads)
  * classifier(input_ids, input_mask, segment_ids)
        -> probabilities [batch, num_labels]
        (only when the checkpoint has a fine-tuned classifier: root `output_weights`/`output_bias`)
  * token_classifier(input_ids, input_mask, segment_ids)
        -> tag_ids [batch, seq] int32, probabilities [batch, seq, num_tags] float32
        (only for a run_ner.py model: tag ids index model_info.json's "labels"; a CRF is
        decoded inside the graph by Viterbi under the tag scheme's constraints, a softmax
        head by argmax. Tags are predicted for every real token but the first ([CLS]) and
        the last ([SEP]); those and padding get 0. probabilities are the per-token softmax
        (of the emission scores for a CRF).)

When the checkpoint names its classes (an HF directory's id2label, a run_classifier.py output's
model_info.json), `loaded.label_names` holds them by class id. --init_checkpoint may be a
Hugging Face ALBERT directory; its config.json then replaces --albert_config_file.

A sequence longer than max_position_embeddings makes the call fail with
"sequence length exceeds max_position_embeddings N".

With a vocab (--vocab_file, or vocab.txt / model_info.json in the checkpoint's directory) the
SavedModel also takes raw text: the tokenizer (tokenization_tf.InGraphTokenizer, the ids of
tokenization.FullTokenizer) is inside it, its vocab copied into `assets/`. Inputs are UTF-8
string tensors of shape [batch]; for one-text tasks text_b is "" (an empty text_b means no
second text: [CLS] a [SEP]). Each pair is packed and truncated (longest text first) to
max_seq_length as run_classifier.py does (--max_seq_length, else model_info.json's, else 128,
or max_position_embeddings if that is less):
  * encode_text(text_a, text_b)
        -> pooled_output [batch, hidden], sequence_output [batch, seq, hidden], input_mask [batch, seq]
  * classify_text(text_a, text_b)   (fine-tuned classifiers)
        -> probabilities [batch, num_labels], labels [batch, num_labels] (the label names of
           model_info.json, else "0".."C-1", in the probabilities' order), predicted_label [batch]
  * ner_text(text)   (run_ner.py token classifiers with character units)
        -> num_entities [batch] int32, and per entity, padded to the batch's most entities:
           types [batch, E] string, starts / ends [batch, E] int32 (character offsets into the
           text, end exclusive: texts == text[start:end]; padding -1), texts [batch, E] string.
           The entities run_ner.py --do_predict finds: a long text is cut into overlapping
           windows (model_info.json's max_seq_length and window_stride), never truncated
           (ner_tf.TextTagger).
--nowith_tokenizer leaves them out. The graph uses core TensorFlow ops only, so
`saved_model_cli run` and TensorFlow Serving run the text signatures as they are.

Usage:
  python export_savedmodel.py --albert_config_file=albert_tiny_zh/albert_config_tiny.json \
      --init_checkpoint=albert_tiny_zh/albert_model.ckpt --export_dir=/tmp/albert_tiny_savedmodel

  loaded = tf.saved_model.load("/tmp/albert_tiny_savedmodel")
  out = loaded.signatures["serving_default"](input_ids=ids, input_mask=mask, segment_ids=segs)

  python export_savedmodel.py --init_checkpoint=output/lcqmc --export_dir=/tmp/lcqmc_savedmodel
  saved_model_cli run --dir /tmp/lcqmc_savedmodel --tag_set serve --signature_def classify_text \
      --input_exprs 'text_a=["我想买手机"];text_b=["我要买个手机"]'
"""

import cpu_kernels  # noqa: F401  # isort: skip  (first: TensorFlow reads its kernel choice on load)
import dataclasses
import json
import os

import tensorflow as tf
from absl import flags, logging

import checkpoints
import errors
import inference
import ner_tf
import tokenization
import tokenization_tf
from errors import AlbertError

FLAGS = flags.FLAGS


def define_flags():
    checkpoints.define_model_flags(
        FLAGS,
        "Checkpoint prefix (e.g. .../albert_model.ckpt) or a model directory (its best, "
        "else latest checkpoint).",
    )
    flags.DEFINE_string("export_dir", None, "Directory to write the SavedModel into.")
    flags.DEFINE_string(
        "vocab_file",
        None,
        "vocab.txt for the raw-text signatures (default: the model directory's).",
    )
    flags.DEFINE_bool(
        "with_tokenizer",
        None,
        "Add the raw-text signatures encode_text / classify_text (default: when a vocab is known).",
    )
    flags.DEFINE_integer(
        "max_seq_length", None, "Tokens per packed text pair (default: model_info.json's, or 128)."
    )
    flags.DEFINE_bool(
        "do_lower_case", None, "Lower-case the input (default: model_info.json's, or True)."
    )


DEFAULT_MAX_SEQ_LENGTH = 128  # run_classifier.py's


@dataclasses.dataclass(frozen=True)
class TextSettings:
    """What the raw-text signatures need besides the weights; stored in the SavedModel."""

    vocab_file: str
    max_seq_length: int | None = None  # None: DEFAULT_MAX_SEQ_LENGTH, or less if the config needs
    do_lower_case: bool = True
    labels: list | None = None  # model_info.json's labels, in the classifier's order
    label_names: list | None = None  # their readable names: the `labels` output
    window_stride: int | None = None  # a token classifier's (run_ner.py --window_stride)
    units: str = "char"  # a token classifier's label units (run_ner.py --units)


def text_settings(
    init_checkpoint, vocab_file=None, with_tokenizer=None, max_seq_length=None, do_lower_case=None
):
    """TextSettings for a checkpoint, or None when the SavedModel gets no tokenizer.

    Each argument that is None comes from the checkpoint directory's model_info.json (what
    run_classifier.py fine-tuned with), and the vocab also from the directory's vocab.txt; so
    a fine-tuned output directory exports ready for raw text with no extra flag.
    with_tokenizer=None means "if a vocab is known"; False never; True requires a vocab.
    """
    if with_tokenizer is False:
        return None
    path = os.fspath(init_checkpoint)
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    info = checkpoints.read_model_info(directory or ".") or {}
    if not vocab_file:
        candidates = (info.get("vocab_file"), os.path.join(directory, checkpoints.VOCAB_COPY))
        vocab_file = next((c for c in candidates if c and os.path.isfile(c)), None)
        if vocab_file is None:
            if with_tokenizer:
                raise AlbertError(
                    f"--with_tokenizer needs a vocab and {directory or '.'} has no "
                    f"{checkpoints.VOCAB_COPY}: pass --vocab_file"
                )
            return None
    elif not os.path.isfile(vocab_file):
        raise AlbertError(f"--vocab_file {vocab_file} does not exist")
    return TextSettings(
        vocab_file=vocab_file,
        max_seq_length=max_seq_length or info.get("max_seq_length"),
        do_lower_case=info.get("do_lower_case", True) if do_lower_case is None else do_lower_case,
        labels=info.get("labels"),
        label_names=info.get("label_names") or info.get("labels"),
        window_stride=info.get("window_stride"),
        units=info.get("units", "char"),
    )


def _complete_text_settings(text, config, num_labels):
    """`text` checked against the model, with the max_seq_length and labels filled in."""
    tokenization.check_vocab_size(text.vocab_file, config.vocab_size)
    max_seq_length = text.max_seq_length or min(
        DEFAULT_MAX_SEQ_LENGTH, config.max_position_embeddings
    )
    config.check_max_seq_length(max_seq_length)
    labels, label_names = text.labels, text.label_names
    if num_labels:
        labels = labels or [str(i) for i in range(num_labels)]
        label_names = label_names or labels
        if not len(labels) == len(label_names) == num_labels:
            raise AlbertError(
                f"model_info.json names {len(label_names)} labels but the checkpoint's "
                f"classifier has {num_labels}: the directory holds another model's info"
            )
    return dataclasses.replace(
        text, max_seq_length=max_seq_length, labels=labels, label_names=label_names
    )


class AlbertExportModule(tf.Module):
    """The exported object: the loaded models plus one tf.function per signature."""

    def __init__(self, config, models, label_names=None):
        super().__init__(name="albert_export")
        self.heads = models.heads
        self.encoder = models.encoder
        # The pretraining signature needs both heads (an HF AlbertForMaskedLM has one).
        self.pretraining = models.pretraining if models.heads.pretraining else None
        self.classifier = models.classifier
        self.token_classifier = models.token_classifier
        self.style = models.style
        self.config_json = tf.Variable(
            config.to_json_string(), trainable=False, name="albert_config_json"
        )
        if label_names and self.classifier is not None:
            self.label_names = tf.Variable(label_names, trainable=False, name="label_names")
        ids = tf.TensorSpec([None, None], tf.int32, name="input_ids")
        mask = tf.TensorSpec([None, None], tf.int32, name="input_mask")
        segments = tf.TensorSpec([None, None], tf.int32, name="segment_ids")
        positions = tf.TensorSpec([None, None], tf.int32, name="masked_lm_positions")
        self.serve_encoder = tf.function(self._encode, input_signature=[ids, mask, segments])
        if self.pretraining is not None:
            self.serve_pretraining = tf.function(
                self._pretrain, input_signature=[ids, mask, segments, positions]
            )
        if self.classifier is not None:
            self.serve_classifier = tf.function(
                self._classify, input_signature=[ids, mask, segments]
            )
        if self.token_classifier is not None:
            self.serve_token_classifier = tf.function(
                self._tag, input_signature=[ids, mask, segments]
            )

    def _encode(self, input_ids, input_mask, segment_ids):
        outputs = self.encoder(input_ids, input_mask, segment_ids, training=False)
        return {
            "sequence_output": outputs["sequence_output"],
            "pooled_output": outputs["pooled_output"],
        }

    def _pretrain(self, input_ids, input_mask, segment_ids, masked_lm_positions):
        outputs = self.pretraining(
            input_ids, input_mask, segment_ids, masked_lm_positions, training=False
        )
        return {
            "masked_lm_log_probs": outputs["masked_lm_log_probs"],
            "sentence_order_logits": outputs["sentence_order_logits"],
        }

    def _classify(self, input_ids, input_mask, segment_ids):
        return inference.classifier_probabilities(
            self.classifier, input_ids, input_mask, segment_ids
        )

    def _tag(self, input_ids, input_mask, segment_ids):
        return inference.token_classifier_outputs(
            self.token_classifier, input_ids, input_mask, segment_ids
        )

    def signature_functions(self):
        """dict signature name -> tf.function (with its input_signature)."""
        functions = {"serving_default": self.serve_encoder}
        if self.pretraining is not None:
            functions["pretraining"] = self.serve_pretraining
        if self.classifier is not None:
            functions["classifier"] = self.serve_classifier
        if self.token_classifier is not None:
            functions["token_classifier"] = self.serve_token_classifier
        return functions

    def signatures(self):
        """dict signature name -> concrete function, as tf.saved_model.save wants them."""
        functions = {**self.signature_functions(), **self.text_signature_functions()}
        return {name: fn.get_concrete_function() for name, fn in functions.items()}

    # ------------------------------------------------------------------ raw-text signatures

    def add_text_signatures(self, text):
        """Put the tokenizer of `text` (a TextSettings) inside, and the raw-text signatures."""
        self.tokenizer = tokenization_tf.InGraphTokenizer(
            text.vocab_file, do_lower_case=text.do_lower_case, max_seq_length=text.max_seq_length
        )
        self._label_names = tf.constant(text.label_names or [""])
        self.text_tagger = self._text_tagger(text)
        # What a Python client needs besides the signatures (inference.SavedModelTextPredictor).
        info = dataclasses.asdict(text)
        del info["vocab_file"]  # the SavedModel's own copy is in assets/
        self.text_info_json = tf.Variable(
            json.dumps(info, ensure_ascii=False), trainable=False, name="text_info_json"
        )
        for name, (method, inputs, present) in self._text_signature_table().items():
            if present:
                specs = [tf.TensorSpec([None], tf.string, name=n) for n in inputs]
                setattr(self, name, tf.function(method, input_signature=specs))

    def _text_tagger(self, text):
        """The ner_text pipeline of a token classifier, or None (with the reason logged)."""
        if self.token_classifier is None:
            return None
        if not self.heads.tags:
            reason = 'its tag names are unknown (no model_info.json with "labels")'
        elif text.units != "char":
            reason = f"it was trained with --units={text.units} (ner_text tags characters)"
        else:
            return ner_tf.TextTagger(
                self.tokenizer,
                self.token_classifier,
                self.heads.tags,
                self.heads.tag_scheme or "BIO",
                text.max_seq_length,
                text.window_stride,
            )
        logging.warning("no ner_text signature for this token classifier: %s", reason)
        return None

    def _text_signature_table(self):
        """Raw-text signature name -> (method, its input names, whether the model has the
        head it needs). Inputs are [batch] strings; a new head adds its row here."""
        pair = ("text_a", "text_b")
        return {
            "encode_text": (self._encode_text, pair, True),
            "classify_text": (self._classify_text, pair, self.classifier is not None),
            "ner_text": (self._ner_text, ("text",), self.text_tagger is not None),
        }

    def text_signature_functions(self):
        """dict raw-text signature name -> tf.function (empty without a tokenizer)."""
        if getattr(self, "tokenizer", None) is None:
            return {}
        table = self._text_signature_table()
        return {name: getattr(self, name) for name, (*_, present) in table.items() if present}

    def _pack_texts(self, text_a, text_b):
        """The tokenizer's id tensors, with at least one position.

        An empty batch packs to shape [0, 0]; the encoder reads position 0 ([CLS]) for the
        pooled output, so it gets [0, 1]. A non-empty batch always has [CLS] and [SEP].
        """
        features = self.tokenizer.pack(text_a, text_b)
        missing = tf.maximum(1 - tf.shape(features["input_ids"])[1], 0)
        return [tf.pad(features[name], [[0, 0], [0, missing]]) for name in inference.INPUT_NAMES]

    def _encode_text(self, text_a, text_b):
        input_ids, input_mask, segment_ids = self._pack_texts(text_a, text_b)
        outputs = self._encode(input_ids, input_mask, segment_ids)
        # Back to the packed width: 0 for an empty batch (see _pack_texts).
        shape = tf.shape(input_ids)
        width = shape[1] * tf.minimum(shape[0], 1)
        return {
            "pooled_output": outputs["pooled_output"],
            "sequence_output": outputs["sequence_output"][:, :width],
            "input_mask": input_mask[:, :width],
        }

    def _classify_text(self, text_a, text_b):
        probabilities = self._classify(*self._pack_texts(text_a, text_b))["probabilities"]
        batch = tf.shape(probabilities)[0]
        return {
            "probabilities": probabilities,
            "labels": tf.tile(self._label_names[None], [batch, 1]),
            "predicted_label": tf.gather(self._label_names, tf.argmax(probabilities, axis=-1)),
        }

    def _ner_text(self, text):
        return self.text_tagger(text)


def build_export_module(config, init_checkpoint, style=None, text=None):
    """The AlbertExportModule of a checkpoint (with the raw-text signatures when `text`, a
    TextSettings, is given; see text_settings), ready to save or to call in memory."""
    models = checkpoints.build_models(config, init_checkpoint, style)
    label_names = checkpoints.label_names(models.path)
    module = AlbertExportModule(config, models, label_names)
    if text is not None:
        if text.label_names is None and label_names:
            text = dataclasses.replace(text, labels=label_names, label_names=label_names)
        module.add_text_signatures(_complete_text_settings(text, config, models.heads.num_labels))
    return module


def export_savedmodel(config, init_checkpoint, export_dir, style=None, text=None):
    """Write the SavedModel; return the list of its signature names.

    `text`: TextSettings to add the raw-text signatures (see text_settings), or None.
    """
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise AlbertError(f"--export_dir {export_dir} exists and is not a directory")
    module = build_export_module(config, init_checkpoint, style, text)
    signatures = module.signatures()
    tf.saved_model.save(module, export_dir, signatures=signatures)
    logging.info("exported %s", init_checkpoint)
    return sorted(signatures)


def main(argv):
    del argv
    if not FLAGS.init_checkpoint:
        raise AlbertError("--init_checkpoint is required (the albert_model.ckpt prefix).")
    if not FLAGS.export_dir:
        raise AlbertError("--export_dir is required.")
    errors.check_output_path(FLAGS.export_dir, "export_dir", directory=True)
    config = checkpoints.config_from_flags(FLAGS)
    text = text_settings(
        FLAGS.init_checkpoint,
        FLAGS.vocab_file,
        FLAGS.with_tokenizer,
        FLAGS.max_seq_length,
        FLAGS.do_lower_case,
    )
    names = export_savedmodel(config, FLAGS.init_checkpoint, FLAGS.export_dir, FLAGS.style, text)
    checkpoint = checkpoints.resolve_checkpoint_path(FLAGS.init_checkpoint)
    logging.info("wrote SavedModel %s with signatures %s", FLAGS.export_dir, ", ".join(names))
    summary = {"export_dir": FLAGS.export_dir, "checkpoint": checkpoint, "signatures": names}
    summary["label_names"] = checkpoints.label_names(checkpoint)
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    define_flags()
    errors.run_main(main)
