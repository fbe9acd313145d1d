"""Convert an albert_zh or Google ALBERT TF checkpoint into a Hugging Face transformers directory.

The output directory loads with `transformers.AlbertModel.from_pretrained(DIR)`,
`AlbertForPreTraining.from_pretrained(DIR)` (when the checkpoint has the `cls/` heads;
`AlbertForMaskedLM` when it has only the masked-LM one) and
`AlbertForSequenceClassification.from_pretrained(DIR)` (when it has a fine-tuned classifier,
root `output_weights`/`output_bias`; its config.json id2label names the classes when a
run_classifier.py model_info.json or an HF classifier does) or
`AlbertForTokenClassification.from_pretrained(DIR)` (a run_ner.py model, told by the
model_info.json beside it; its tags become id2label), and `AutoTokenizer.from_pretrained(DIR)`
gives a BertTokenizer with the albert_zh vocab when --vocab_file is given or the checkpoint is
given as a directory that holds a vocab.txt (e.g. a run_classifier.py output).

A run_ner.py model with a CRF converts its encoder and emission head to
AlbertForTokenClassification; the CRF itself has no place in HF (its logits are the CRF's
emission scores, and argmax over them is not the CRF's decoding). The transition scores are
written beside it as crf_transitions.json, in pytorch-crf's convention (`transitions[i][j]`
scores tag j after tag i, plus start/end scores) with the tag scheme's allowed transitions:
decode HF's logits with them (forbidden transitions set to -1e9) to get our tags.

Both checkpoint styles are handled (the layout itself lives in hf_checkpoint.py):
  * google (albert_tiny_zh_google, Google's albert_*_zh): a direct rename, kernels transposed.
  * brightmart post-LN (albert_tiny_zh, albert_base_zh, ...): folded exactly into HF's layout
    with E = H (`word_embeddings @ word_embeddings_2` becomes one [V,H] table).
  * brightmart pre-LN (albert_config_xxlarge.json) cannot be represented: HF's AlbertLayer is
    post-LN, so the converter refuses with a clear error.

The way back is convert_pytorch_checkpoint_to_tf.py.

Usage:
  python convert_albert_tf_checkpoint_to_pytorch.py \
      --tf_checkpoint_path=albert_tiny_zh/albert_model.ckpt \
      --albert_config_file=albert_tiny_zh/albert_config_tiny.json \
      --vocab_file=albert_tiny_zh/vocab.txt --output_dir=/tmp/albert_tiny_zh_pytorch
"""

import json
import os

from absl import flags, logging

import checkpoints
import errors
import hf_checkpoint
import modeling
import tokenization
from errors import AlbertError

# Re-exported: tests/test_hf_parity.py checks them through this script.
from hf_checkpoint import fill_unused_groups, hf_group_layout  # noqa: F401

FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags (not defined on import, so tests and scripts can reuse `convert`)."""
    checkpoints.define_model_flags(
        FLAGS, "TF checkpoint prefix or model directory (alias of --tf_checkpoint_path)."
    )
    flags.DEFINE_string("tf_checkpoint_path", None, "TF checkpoint prefix (.../albert_model.ckpt).")
    flags.DEFINE_string(
        "vocab_file",
        None,
        "vocab.txt written with a BertTokenizer config (default: the checkpoint directory's).",
    )
    flags.DEFINE_string("output_dir", None, "Directory for config.json, model.safetensors, ...")
    flags.DEFINE_bool("do_lower_case", True, "Written into the tokenizer config.")


_INSTALL_HINT = "pip install -r requirements-dev.txt"


CRF_FILE = "crf_transitions.json"
CRF_VARIABLES = {
    "output_transitions": "transitions",
    "output_start_transitions": "start_transitions",
    "output_end_transitions": "end_transitions",
}


def read_checkpoint_weights(config, checkpoint_path, style):
    """(NumPy weights of every head the checkpoint holds, its Heads), loaded (and so
    validated) through checkpoints.build_models: the same clear errors as every script."""
    models = checkpoints.build_models(config, checkpoint_path, style)
    weights = {name: var.numpy() for name, var in models.named_variables().items()}
    return weights, models.heads


def write_crf_transitions(path, crf_weights, heads):
    """The CRF HF cannot hold, as JSON: pytorch-crf's parameters plus the scheme's rules."""
    values = {key: crf_weights[name].tolist() for name, key in CRF_VARIABLES.items()}
    if heads.tags:
        allowed = modeling.crf_allowed_transitions(heads.tags, heads.tag_scheme or "BIO")
        values.update(
            allowed_transitions=allowed[0].numpy().tolist(),
            allowed_start=allowed[1].numpy().tolist(),
            allowed_end=allowed[2].numpy().tolist(),
        )
    record = {
        "note": (
            "HF's AlbertForTokenClassification does not use these: its logits are the CRF's "
            "emission scores. Decode them with a linear-chain CRF (pytorch-crf: "
            "CRF(num_tags, batch_first=True) with these transitions, start_transitions and "
            "end_transitions), setting forbidden transitions (allowed_* false) to -1e9 as "
            "run_ner.py's decoding does. transitions[i][j] scores tag j following tag i."
        ),
        "tags": list(heads.tags) if heads.tags else None,
        "tag_scheme": heads.tag_scheme,
        **values,
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, ensure_ascii=False, indent=1)


def _import_torch_stack():
    try:
        import torch
        import transformers
    except ImportError as e:
        raise AlbertError(
            f"converting to PyTorch needs torch and transformers ({e.name} is not "
            f"installed): {_INSTALL_HINT}"
        ) from None
    return torch, transformers


def verify_loads(output_dir, architectures, transformers):
    """Load the written directory with every class it claims; fail if any weight is missing."""
    transformers.logging.set_verbosity_error()  # AlbertModel lists the head weights it skips
    for class_name in dict.fromkeys(architectures + ["AlbertModel"]):
        model_class = getattr(transformers, class_name)
        _, info = model_class.from_pretrained(output_dir, output_loading_info=True)
        if info["missing_keys"] or info["mismatched_keys"]:
            raise RuntimeError(
                f"{class_name} misses {sorted(info['missing_keys'])} / mismatched "
                f"{sorted(info['mismatched_keys'])} in {output_dir} (converter bug)"
            )


def convert(config, checkpoint_path, output_dir, style=None, vocab_file=None, do_lower_case=True):
    """Write the HF transformers directory for a TF checkpoint; return a summary dict."""
    _, transformers = _import_torch_stack()
    if not checkpoint_path:
        raise AlbertError("--tf_checkpoint_path is required (the albert_model.ckpt prefix).")
    if vocab_file:
        tokenization.check_vocab_size(vocab_file, config.vocab_size)  # before the slow part
    style = checkpoints.resolve_style(config, init_checkpoint=checkpoint_path, style_flag=style)
    hf_checkpoint.check_hf_representable(config, style)  # before the slow part
    weights, heads = read_checkpoint_weights(config, checkpoint_path, style)
    crf_weights = {name: weights.pop(name) for name in CRF_VARIABLES if name in weights}
    has_mlm, has_sop, num_labels = hf_checkpoint.google_heads(
        {name: value.shape for name, value in weights.items()}
    )
    layout = hf_checkpoint.to_hf_layout(
        weights, config, style, token_level=heads.token_level, id2label=heads.tags
    )
    names = None
    if num_labels and not heads.token_level:
        names = checkpoints.label_names(checkpoint_path)
        if names:  # a run_classifier.py output (or an HF classifier) names its classes
            layout.config_values["id2label"] = dict(enumerate(names))
            layout.config_values["label2id"] = {name: i for i, name in enumerate(names)}

    os.makedirs(output_dir, exist_ok=True)
    crf_file = None
    if crf_weights:
        crf_file = os.path.join(output_dir, CRF_FILE)
        write_crf_transitions(crf_file, crf_weights, heads)
    transformers.AlbertConfig(**layout.config_values).save_pretrained(output_dir)
    hf_checkpoint.save_hf_weights(layout.state, output_dir)
    if vocab_file:
        hf_checkpoint.write_tokenizer_files(
            vocab_file, output_dir, do_lower_case, config.max_position_embeddings
        )
    verify_loads(output_dir, layout.architectures, transformers)
    return {
        "style": style,
        "architectures": layout.architectures,
        "num_tensors": len(layout.state),
        "filled_unused_groups": layout.filled_groups,
        "has_pretraining_heads": has_mlm and has_sop,
        "dropped_pretraining_heads": bool(layout.dropped_heads),
        "dropped_heads": layout.dropped_heads,
        "num_labels": num_labels,
        "label_names": names,
        "tags": list(heads.tags) if heads.tags else None,
        "crf_transitions_file": crf_file,
    }


def main(argv):
    del argv
    if FLAGS.tf_checkpoint_path and not FLAGS.init_checkpoint:
        FLAGS.init_checkpoint = FLAGS.tf_checkpoint_path
    config = checkpoints.config_from_flags(FLAGS)
    if not FLAGS.output_dir:
        raise AlbertError("--output_dir is required.")
    errors.check_output_path(FLAGS.output_dir, "output_dir", directory=True)
    _import_torch_stack()  # fail fast, before the slow TF work
    found = checkpoints.tokenizer_files(FLAGS.init_checkpoint)  # a model directory's copies
    do_lower_case = FLAGS.do_lower_case
    if found.do_lower_case is not None and not FLAGS["do_lower_case"].present:
        do_lower_case = found.do_lower_case
    summary = convert(
        config,
        FLAGS.init_checkpoint,
        FLAGS.output_dir,
        style=FLAGS.style,
        vocab_file=FLAGS.vocab_file or found.vocab_file,
        do_lower_case=do_lower_case,
    )
    if summary["filled_unused_groups"]:
        logging.info(
            "groups %s are never used by any layer; filled with copies of the nearest "
            "lower group so HF's ModuleList is complete",
            summary["filled_unused_groups"],
        )
    if summary["dropped_heads"]:
        logging.info(
            "left out %s: one HF class (%s) cannot hold them next to the other heads",
            ", ".join(summary["dropped_heads"]),
            summary["architectures"][0],
        )
    if summary["crf_transitions_file"]:
        logging.warning(
            "the CRF has no place in HF: AlbertForTokenClassification's logits are its emission "
            "scores, and argmax over them is not the CRF's decoding; its transitions are in %s",
            summary["crf_transitions_file"],
        )
    if summary["architectures"] == ["AlbertModel"]:
        logging.info(
            "the checkpoint has no cls/ pretraining heads: load it with AlbertModel "
            "(AlbertForPreTraining would initialise the heads randomly)"
        )
    logging.info(
        "wrote %s (%s, %d tensors, style %s)",
        FLAGS.output_dir,
        ", ".join(summary["architectures"]),
        summary["num_tensors"],
        summary["style"],
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    define_flags()
    errors.run_main(main)
