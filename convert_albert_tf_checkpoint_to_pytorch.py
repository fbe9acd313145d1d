"""Convert an albert_zh or Google ALBERT TF checkpoint into a Hugging Face transformers directory.

The output directory loads with `transformers.AlbertModel.from_pretrained(DIR)`,
`AlbertForPreTraining.from_pretrained(DIR)` (when the checkpoint has the `cls/` heads) and
`AlbertForSequenceClassification.from_pretrained(DIR)` (when it has a fine-tuned classifier,
root `output_weights`/`output_bias`), and `AutoTokenizer.from_pretrained(DIR)` gives a
BertTokenizer with the albert_zh vocab when --vocab_file is given.

Both checkpoint styles are handled:
  * google (albert_tiny_zh_google, Google's albert_*_zh): a direct rename, kernels transposed.
  * brightmart post-LN (albert_tiny_zh, albert_base_zh, ...): folded exactly into HF's layout.
    HF has no `word_embeddings_2` projection and puts position/type embeddings at width E, so
    `word_embeddings @ word_embeddings_2` becomes a [V,H] table, the HF embedding size becomes
    E=H, `embedding_hidden_mapping_in` becomes the identity, and the H->H MLM transform then
    matches HF's H->"E" transform exactly.
  * brightmart pre-LN (albert_config_xxlarge.json) cannot be represented: HF's AlbertLayer is
    post-LN, so the converter refuses with a clear error.

Usage:
  python convert_albert_tf_checkpoint_to_pytorch.py \
      --tf_checkpoint_path=albert_tiny_zh/albert_model.ckpt \
      --albert_config_file=albert_tiny_zh/albert_config_tiny.json \
      --vocab_file=albert_tiny_zh/vocab.txt --output_dir=/tmp/albert_tiny_zh_pytorch
"""

import json
import os
import re
import shutil

import numpy as np
from absl import flags, logging

import checkpoints
import errors
import modeling
from errors import AlbertError

FLAGS = flags.FLAGS


def define_flags():
    """Command-line flags (not defined on import, so tests and scripts can reuse `convert`)."""
    flags.DEFINE_string("tf_checkpoint_path", None, "TF checkpoint prefix (.../albert_model.ckpt).")
    flags.DEFINE_string("albert_config_file", None, "The ALBERT config JSON of the checkpoint.")
    flags.DEFINE_string("bert_config_file", None, "Alias of --albert_config_file.")
    flags.DEFINE_string(
        "vocab_file", None, "Optional vocab.txt; written with a BertTokenizer config."
    )
    flags.DEFINE_string("output_dir", None, "Directory for config.json, model.safetensors, ...")
    flags.DEFINE_enum(
        "style",
        None,
        list(modeling.STYLES),
        "Checkpoint naming style; inferred from the checkpoint/config when omitted.",
    )
    flags.DEFINE_bool("do_lower_case", True, "Written into the tokenizer config.")


# Our (original TF) activation names -> HF ACT2FN names. TF "gelu" is the tanh approximation,
# which HF calls "gelu_new".
_HF_ACTIVATIONS = {
    "gelu": "gelu_new",
    "gelu_new": "gelu_new",
    "relu": "relu",
    "swish": "swish",
    "tanh": "tanh",
    "linear": "linear",
}

_INSTALL_HINT = "pip install -r requirements-dev.txt"

_PRELN_MESSAGE = (
    'brightmart pre-LN models (ln_type "preln") cannot be converted: HF transformers\' '
    "AlbertLayer is post-LN only, so no HF ALBERT computes the same function; serve it with "
    "export_savedmodel.py instead"
)

# Google-style TF names -> HF state-dict keys. (pattern, replacement, transpose_kernel).
# TF dense kernels are [in, out]; torch Linear weights are [out, in].
_LAYER = r"bert/encoder/transformer/group_(\d+)/inner_group_(\d+)/"
_HF_LAYER = r"albert.encoder.albert_layer_groups.\1.albert_layers.\2."
_GOOGLE_TO_HF = [
    (
        r"bert/embeddings/(word|position|token_type)_embeddings",
        r"albert.embeddings.\1_embeddings.weight",
        False,
    ),
    (r"bert/embeddings/LayerNorm/gamma", "albert.embeddings.LayerNorm.weight", False),
    (r"bert/embeddings/LayerNorm/beta", "albert.embeddings.LayerNorm.bias", False),
    (
        r"bert/encoder/embedding_hidden_mapping_in/kernel",
        "albert.encoder.embedding_hidden_mapping_in.weight",
        True,
    ),
    (
        r"bert/encoder/embedding_hidden_mapping_in/bias",
        "albert.encoder.embedding_hidden_mapping_in.bias",
        False,
    ),
    (
        _LAYER + r"attention_1/self/(query|key|value)/kernel",
        _HF_LAYER + r"attention.\3.weight",
        True,
    ),
    (_LAYER + r"attention_1/self/(query|key|value)/bias", _HF_LAYER + r"attention.\3.bias", False),
    (_LAYER + r"attention_1/output/dense/kernel", _HF_LAYER + "attention.dense.weight", True),
    (_LAYER + r"attention_1/output/dense/bias", _HF_LAYER + "attention.dense.bias", False),
    (_LAYER + r"LayerNorm/gamma", _HF_LAYER + "attention.LayerNorm.weight", False),
    (_LAYER + r"LayerNorm/beta", _HF_LAYER + "attention.LayerNorm.bias", False),
    (_LAYER + r"ffn_1/intermediate/dense/kernel", _HF_LAYER + "ffn.weight", True),
    (_LAYER + r"ffn_1/intermediate/dense/bias", _HF_LAYER + "ffn.bias", False),
    (_LAYER + r"ffn_1/intermediate/output/dense/kernel", _HF_LAYER + "ffn_output.weight", True),
    (_LAYER + r"ffn_1/intermediate/output/dense/bias", _HF_LAYER + "ffn_output.bias", False),
    (_LAYER + r"LayerNorm_1/gamma", _HF_LAYER + "full_layer_layer_norm.weight", False),
    (_LAYER + r"LayerNorm_1/beta", _HF_LAYER + "full_layer_layer_norm.bias", False),
    (r"bert/pooler/dense/kernel", "albert.pooler.weight", True),
    (r"bert/pooler/dense/bias", "albert.pooler.bias", False),
    (r"cls/predictions/transform/dense/kernel", "predictions.dense.weight", True),
    (r"cls/predictions/transform/dense/bias", "predictions.dense.bias", False),
    (r"cls/predictions/transform/LayerNorm/gamma", "predictions.LayerNorm.weight", False),
    (r"cls/predictions/transform/LayerNorm/beta", "predictions.LayerNorm.bias", False),
    (r"cls/predictions/output_bias", "predictions.bias", False),
    # [2,H] / [C,H] are already [out, in]: no transpose.
    (r"cls/seq_relationship/output_weights", "sop_classifier.classifier.weight", False),
    (r"cls/seq_relationship/output_bias", "sop_classifier.classifier.bias", False),
    (r"output_weights", "classifier.weight", False),
    (r"output_bias", "classifier.bias", False),
]

# brightmart layer scopes -> google layer scopes (docs/formats.md#folding-brightmart-into-google). Order matters:
# the longer `attention/output/...` and `output/LayerNorm` rules come before `output/dense`.
_BRIGHTMART_LAYER_RENAMES = [
    ("attention/self/", "attention_1/self/"),
    ("attention/output/dense/", "attention_1/output/dense/"),
    ("attention/output/LayerNorm/", "LayerNorm/"),
    ("intermediate/dense/", "ffn_1/intermediate/dense/"),
    ("output/dense/", "ffn_1/intermediate/output/dense/"),
    ("output/LayerNorm/", "LayerNorm_1/"),
]


# ----------------------------------------------------------------------------- weights


def read_checkpoint_weights(config, checkpoint_path, style):
    """Load the checkpoint into our models (validating names and shapes); return numpy weights.

    Going through `modeling.load_checkpoint` gives the same clear errors as every other script
    (wrong config for the checkpoint, truncated files, missing variables).
    """
    models = checkpoints.build_models(config, checkpoint_path, style)
    weights = {}
    for model in (models.encoder, models.pretraining, models.classifier):
        if model is not None:
            weights.update({name: var.numpy() for name, var in model.named_variables().items()})
    num_labels = models.classifier.num_labels if models.classifier is not None else None
    return models.style, weights, models.pretraining is not None, num_labels


def fold_brightmart_into_google(weights, config):
    """Rewrite brightmart post-LN weights as an equivalent google-style model with E = H."""
    if config.ln_type == "preln":
        raise AlbertError(_PRELN_MESSAGE)
    folded = {}
    for name, value in weights.items():
        if name == "bert/embeddings/word_embeddings_2":
            continue
        if name == "bert/embeddings/word_embeddings":
            # gather(W1)·W2 == gather(W1·W2): one [V,H] table, and the MLM output layer
            # ·W2ᵀ·W1ᵀ == ·(W1·W2)ᵀ, so the tied decoder stays exact.
            value = value @ weights["bert/embeddings/word_embeddings_2"]
        match = re.fullmatch(r"bert/encoder/layer_(shared|\d+)/(.*)", name)
        if match:
            group = 0 if match.group(1) == "shared" else int(match.group(1))
            rest = match.group(2)
            for old, new in _BRIGHTMART_LAYER_RENAMES:
                if rest.startswith(old):
                    rest = new + rest[len(old) :]
                    break
            name = f"bert/encoder/transformer/group_{group}/inner_group_0/{rest}"
        folded[name] = value
    # HF always applies embedding_hidden_mapping_in; with E = H it is the identity.
    folded.update(_identity_projection(config.hidden_size))
    return folded


def _identity_projection(hidden_size):
    return {
        "bert/encoder/embedding_hidden_mapping_in/kernel": np.eye(hidden_size, dtype=np.float32),
        "bert/encoder/embedding_hidden_mapping_in/bias": np.zeros(hidden_size, np.float32),
    }


def google_to_hf_state_dict(weights):
    """Map google-style TF names to HF state-dict keys, transposing dense kernels."""
    state = {}
    for name, value in weights.items():
        for pattern, replacement, transpose in _GOOGLE_TO_HF:
            match = re.fullmatch(pattern, name)
            if match:
                key = match.expand(replacement)
                state[key] = np.ascontiguousarray(value.T if transpose else value, np.float32)
                break
        else:
            if name.startswith("loss/"):
                raise AlbertError(
                    f"checkpoint variable {name} (brightmart pre-LN classifier) has "
                    "no place in HF's ALBERT; it cannot be converted."
                )
            raise AlbertError(
                f"checkpoint variable {name} has no HF transformers equivalent; "
                "is this an ALBERT checkpoint?"
            )
    return state


def hf_group_layout(num_layers, num_groups):
    """Check HF picks the same group for every layer as Google's ALBERT; return the used groups."""
    used = []
    for layer in range(num_layers):
        google_group = int(layer / num_layers * num_groups)
        hf_group = int(layer / (num_layers / num_groups))
        if google_group != hf_group:
            raise AlbertError(
                f"num_hidden_layers={num_layers} with num_hidden_groups={num_groups}: HF assigns "
                f"layer {layer} to group {hf_group} but the TF model uses group {google_group} "
                "(floating-point rounding), so HF cannot reproduce this model exactly."
            )
        if google_group not in used:
            used.append(google_group)
    return used


def fill_unused_groups(state, num_groups, used_groups):
    """HF builds every group; the TF model only has those a layer uses. Copy the nearest used one.

    The copies are never executed (no layer maps to them), they only make the checkpoint complete.
    """
    filled = []
    prefix = "albert.encoder.albert_layer_groups."
    for group in range(num_groups):
        if group in used_groups:
            continue
        source = max(g for g in used_groups if g < group)
        for key in [k for k in state if k.startswith(f"{prefix}{source}.")]:
            state[f"{prefix}{group}." + key[len(f"{prefix}{source}.") :]] = state[key].copy()
        filled.append(group)
    return filled


# ----------------------------------------------------------------------------- output


def hf_config_dict(config, embedding_size, num_groups, inner_group_num, num_labels, architectures):
    """The HF AlbertConfig fields for our model (tanh gelu, eps 1e-12, BertTokenizer)."""
    activation = config.hidden_act
    if activation not in _HF_ACTIVATIONS:
        raise AlbertError(
            f"hidden_act {activation!r} has no HF transformers equivalent; use one of "
            f"{sorted(_HF_ACTIVATIONS)}."
        )
    values = {
        "architectures": architectures,
        "model_type": "albert",
        "vocab_size": config.vocab_size,
        "embedding_size": embedding_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_hidden_groups": num_groups,
        "inner_group_num": inner_group_num,
        "num_attention_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": _HF_ACTIVATIONS[activation],
        "hidden_dropout_prob": config.hidden_dropout_prob,
        "attention_probs_dropout_prob": config.attention_probs_dropout_prob,
        "max_position_embeddings": config.max_position_embeddings,
        "type_vocab_size": config.type_vocab_size,
        "initializer_range": config.initializer_range,
        "layer_norm_eps": 1e-12,
        "tokenizer_class": "BertTokenizer",
        "pad_token_id": 0,
    }
    if num_labels:
        values["num_labels"] = num_labels
    return values


def check_vocab_size(vocab_file, vocab_size):
    """The vocab file must exist and have exactly the config's vocab_size lines."""
    if not os.path.isfile(vocab_file):
        raise AlbertError(f"vocab file not found: {vocab_file}")
    with open(vocab_file, encoding="utf-8") as f:
        num_tokens = sum(1 for _ in f)
    if num_tokens != vocab_size:
        raise AlbertError(
            f"{vocab_file} has {num_tokens} tokens but the config's vocab_size is "
            f"{vocab_size}: pass the vocab.txt released with this checkpoint."
        )


def write_tokenizer_files(vocab_file, output_dir, do_lower_case, max_length):
    """Copy vocab.txt and write a tokenizer config that AutoTokenizer resolves to BertTokenizer.

    albert_zh uses BERT's Chinese WordPiece vocab, not ALBERT's SentencePiece model, which is
    why HF's default AlbertTokenizer does not work for it.
    """
    shutil.copyfile(vocab_file, os.path.join(output_dir, "vocab.txt"))
    tokenizer_config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": do_lower_case,
        "tokenize_chinese_chars": True,
        "model_max_length": max_length,
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }
    with open(os.path.join(output_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config, f, indent=2)


def _import_torch_stack():
    try:
        import safetensors.torch
        import torch
        import transformers
    except ImportError as e:
        raise AlbertError(
            f"converting to PyTorch needs torch and transformers ({e.name} is not "
            f"installed): {_INSTALL_HINT}"
        ) from None
    return torch, transformers, safetensors.torch


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
    torch, transformers, safetensors_torch = _import_torch_stack()
    if not checkpoint_path:
        raise AlbertError("--tf_checkpoint_path is required (the albert_model.ckpt prefix).")
    if vocab_file:
        check_vocab_size(vocab_file, config.vocab_size)  # before the slow part
    style = checkpoints.resolve_style(config, init_checkpoint=checkpoint_path, style_flag=style)
    if style == "brightmart" and config.ln_type == "preln":
        raise AlbertError(_PRELN_MESSAGE)
    style, weights, has_heads, num_labels = read_checkpoint_weights(config, checkpoint_path, style)

    if style == "brightmart":
        weights = fold_brightmart_into_google(weights, config)
        embedding_size = config.hidden_size
        # 1 group (layer_shared) or num_hidden_layers groups (unshared `layer_{i}`).
        num_groups = 1 if config.share_parameter_across_layers else config.num_hidden_layers
        inner_group_num = 1
    else:
        embedding_size = config.embedding_size
        num_groups, inner_group_num = config.num_hidden_groups, config.inner_group_num
        if "bert/encoder/embedding_hidden_mapping_in/kernel" not in weights:
            # Google's code omits the projection when E == H; HF always applies it.
            weights.update(_identity_projection(config.hidden_size))

    used_groups = hf_group_layout(config.num_hidden_layers, num_groups)
    state = google_to_hf_state_dict(weights)
    filled_groups = fill_unused_groups(state, num_groups, used_groups)

    dropped_heads = False
    if num_labels:
        architectures = ["AlbertForSequenceClassification"]
        # HF sizes the SOP head by config.num_labels too, so one directory cannot hold both a
        # C-way classifier and the pretraining heads; a fine-tuned model keeps its classifier.
        dropped_heads = has_heads
        state = {
            k: v for k, v in state.items() if not k.startswith(("predictions.", "sop_classifier."))
        }
    else:
        architectures = ["AlbertForPreTraining" if has_heads else "AlbertModel"]
    os.makedirs(output_dir, exist_ok=True)
    hf_config = transformers.AlbertConfig(
        **hf_config_dict(
            config, embedding_size, num_groups, inner_group_num, num_labels, architectures
        )
    )
    hf_config.save_pretrained(output_dir)
    tensors = {key: torch.from_numpy(value) for key, value in state.items()}
    safetensors_torch.save_file(
        tensors, os.path.join(output_dir, "model.safetensors"), metadata={"format": "pt"}
    )
    if vocab_file:
        write_tokenizer_files(vocab_file, output_dir, do_lower_case, config.max_position_embeddings)
    verify_loads(output_dir, architectures, transformers)
    return {
        "style": style,
        "architectures": architectures,
        "num_tensors": len(state),
        "filled_unused_groups": filled_groups,
        "has_pretraining_heads": has_heads,
        "dropped_pretraining_heads": dropped_heads,
        "num_labels": num_labels,
    }


def main(argv):
    del argv
    config_file = FLAGS.albert_config_file or FLAGS.bert_config_file
    if not config_file:
        raise AlbertError("--albert_config_file (or --bert_config_file) is required.")
    if not FLAGS.output_dir:
        raise AlbertError("--output_dir is required.")
    _import_torch_stack()  # fail fast, before the slow TF work
    config = modeling.AlbertConfig.from_json_file(config_file)
    summary = convert(
        config,
        FLAGS.tf_checkpoint_path,
        FLAGS.output_dir,
        style=FLAGS.style,
        vocab_file=FLAGS.vocab_file,
        do_lower_case=FLAGS.do_lower_case,
    )
    if summary["filled_unused_groups"]:
        logging.info(
            "groups %s are never used by any layer; filled with copies of the nearest "
            "lower group so HF's ModuleList is complete",
            summary["filled_unused_groups"],
        )
    if summary["dropped_pretraining_heads"]:
        logging.info(
            "the checkpoint has both a classifier and cls/ heads; wrote the classifier "
            "(AlbertForSequenceClassification) and left out the pretraining heads"
        )
    elif not summary["has_pretraining_heads"] and not summary["num_labels"]:
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
