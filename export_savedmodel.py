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

A sequence longer than max_position_embeddings makes the call fail with
"sequence length exceeds max_position_embeddings N".

Usage:
  python export_savedmodel.py --albert_config_file=albert_tiny_zh/albert_config_tiny.json \
      --init_checkpoint=albert_tiny_zh/albert_model.ckpt --export_dir=/tmp/albert_tiny_savedmodel

  loaded = tf.saved_model.load("/tmp/albert_tiny_savedmodel")
  out = loaded.signatures["serving_default"](input_ids=ids, input_mask=mask, segment_ids=segs)
"""

import json
import os

import tensorflow as tf
from absl import flags, logging

import checkpoints
import errors
import inference
import modeling
from errors import AlbertError

FLAGS = flags.FLAGS


def define_flags():
    checkpoints.define_model_flags(
        FLAGS,
        "Checkpoint prefix (e.g. .../albert_model.ckpt) or a model directory (its best, "
        "else latest checkpoint).",
    )
    flags.DEFINE_string("export_dir", None, "Directory to write the SavedModel into.")


class AlbertExportModule(tf.Module):
    """The exported object: the loaded models plus one tf.function per signature."""

    def __init__(self, config, models):
        super().__init__(name="albert_export")
        self.encoder = models.encoder
        # The pretraining signature needs both heads (an HF AlbertForMaskedLM has one).
        self.pretraining = models.pretraining if models.heads.pretraining else None
        self.classifier = models.classifier
        self.token_classifier = models.token_classifier
        self.style = models.style
        self.config_json = tf.Variable(
            config.to_json_string(), trainable=False, name="albert_config_json"
        )
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
        return {name: fn.get_concrete_function() for name, fn in self.signature_functions().items()}


def export_savedmodel(config, init_checkpoint, export_dir, style=None):
    """Write the SavedModel; return the list of its signature names."""
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise AlbertError(f"--export_dir {export_dir} exists and is not a directory")
    models = checkpoints.build_models(config, init_checkpoint, style)
    module = AlbertExportModule(config, models)
    signatures = module.signatures()
    tf.saved_model.save(module, export_dir, signatures=signatures)
    logging.info("exported %s", models.path)
    return sorted(signatures)


def main(argv):
    del argv
    if not FLAGS.init_checkpoint:
        raise AlbertError("--init_checkpoint is required (the albert_model.ckpt prefix).")
    if not FLAGS.export_dir:
        raise AlbertError("--export_dir is required.")
    config = modeling.AlbertConfig.from_json_file(checkpoints.config_file_from_flags(FLAGS))
    names = export_savedmodel(config, FLAGS.init_checkpoint, FLAGS.export_dir, FLAGS.style)
    checkpoint = checkpoints.resolve_checkpoint_path(FLAGS.init_checkpoint)
    logging.info("wrote SavedModel %s with signatures %s", FLAGS.export_dir, ", ".join(names))
    print(
        json.dumps({"export_dir": FLAGS.export_dir, "checkpoint": checkpoint, "signatures": names})
    )


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    define_flags()
    errors.run_main(main)
