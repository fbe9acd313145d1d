"""The Hugging Face transformers ALBERT layout, in both directions.

HF's ALBERT (`transformers.AlbertModel` and its task classes) computes Google's ALBERT under
other names: torch `Linear` weights are [out, in] where TF kernels are [in, out], and a layer
lives in `albert.encoder.albert_layer_groups.{g}.albert_layers.{k}` instead of
`bert/encoder/transformer/group_{g}/inner_group_{k}`. This module is the one place that knows
that layout; it needs neither torch nor transformers (except to read a `pytorch_model.bin`).

* ours -> HF (convert_albert_tf_checkpoint_to_pytorch.py): `to_hf_layout` renames google-style
  weights. Brightmart post-LN weights are first folded exactly into google's layout with E = H
  (`fold_brightmart_into_google`); brightmart pre-LN has no HF equivalent and is refused.
* HF -> ours (convert_pytorch_checkpoint_to_tf.py): `read_hf_checkpoint` reads config.json,
  the weights (`model.safetensors` with numpy only, `pytorch_model.bin` with torch, sharded or
  not) and the WordPiece vocab.txt, and returns google-style weights under the original TF1
  variable names, which `checkpoints.save_tensors` / `checkpoints.load_checkpoint` use.

Whatever HF can express but our models cannot (erf GELU, an untied MLM decoder, a non-identity
E->H projection when E == H, SentencePiece vocabularies, other model types) is refused with an
AlbertError that says why; nothing is approximated silently.
"""

import dataclasses
import json
import os
import re
import shutil

import numpy as np

import modeling
from errors import AlbertError

# ----------------------------------------------------------------------------- names

# One transformer layer. `{g}` and `{k}` are the group and inner-group numbers.
_TF_LAYER = "bert/encoder/transformer/group_{g}/inner_group_{k}"
_HF_LAYER = "albert.encoder.albert_layer_groups.{g}.albert_layers.{k}."

# modeling's layer roles -> the HF module of the same weights inside one AlbertLayer.
_HF_LAYER_MODULES = {
    "query": "attention.query",
    "key": "attention.key",
    "value": "attention.value",
    "attention_output": "attention.dense",
    "attention_norm": "attention.LayerNorm",
    "ffn_in": "ffn",
    "ffn_out": "ffn_output",
    "ffn_norm": "full_layer_layer_norm",
}

# TF leaf -> (torch leaf, transposed). Dense kernels are [in, out] in TF, [out, in] in torch.
_LEAVES = {
    "kernel": ("weight", True),
    "bias": ("bias", False),
    "gamma": ("weight", False),
    "beta": ("bias", False),
}

# Everything outside the layers: (google-style TF name, HF state-dict key, transposed).
_OUTER_NAMES = [
    ("bert/embeddings/word_embeddings", "albert.embeddings.word_embeddings.weight", False),
    (
        "bert/embeddings/token_type_embeddings",
        "albert.embeddings.token_type_embeddings.weight",
        False,
    ),
    ("bert/embeddings/position_embeddings", "albert.embeddings.position_embeddings.weight", False),
    ("bert/embeddings/LayerNorm/gamma", "albert.embeddings.LayerNorm.weight", False),
    ("bert/embeddings/LayerNorm/beta", "albert.embeddings.LayerNorm.bias", False),
    (
        "bert/encoder/embedding_hidden_mapping_in/kernel",
        "albert.encoder.embedding_hidden_mapping_in.weight",
        True,
    ),
    (
        "bert/encoder/embedding_hidden_mapping_in/bias",
        "albert.encoder.embedding_hidden_mapping_in.bias",
        False,
    ),
    ("bert/pooler/dense/kernel", "albert.pooler.weight", True),
    ("bert/pooler/dense/bias", "albert.pooler.bias", False),
    ("cls/predictions/transform/dense/kernel", "predictions.dense.weight", True),
    ("cls/predictions/transform/dense/bias", "predictions.dense.bias", False),
    ("cls/predictions/transform/LayerNorm/gamma", "predictions.LayerNorm.weight", False),
    ("cls/predictions/transform/LayerNorm/beta", "predictions.LayerNorm.bias", False),
    ("cls/predictions/output_bias", "predictions.bias", False),
    # The TF heads store [out, in] matrices already ([2,H], [C,H]): no transpose.
    ("cls/seq_relationship/output_weights", "sop_classifier.classifier.weight", False),
    ("cls/seq_relationship/output_bias", "sop_classifier.classifier.bias", False),
    # AlbertForSequenceClassification and AlbertForTokenClassification both call their head
    # `classifier`; ours are `output_weights`/`output_bias` [C,H]/[C] in both cases.
    ("output_weights", "classifier.weight", False),
    ("output_bias", "classifier.bias", False),
]


def _layer_names():
    """(TF template, HF template, transposed) of every weight of one layer."""
    names = []
    for role, module in _HF_LAYER_MODULES.items():
        leaves = ("gamma", "beta") if role.endswith("_norm") else ("kernel", "bias")
        for leaf in leaves:
            hf_leaf, transposed = _LEAVES[leaf]
            tf_name = modeling.layer_variable_name("google", _TF_LAYER, f"{role}/{leaf}")
            names.append((tf_name, f"{_HF_LAYER}{module}.{hf_leaf}", transposed))
    return names


def _template_regex(template):
    """A template like `group_{g}/inner_group_{k}` as a regex with named digit groups."""
    parts = re.split(r"\{(\w+)\}", template)
    return re.compile(
        "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>\\d+)" for i, p in enumerate(parts))
    )


# (TF template, TF regex, HF template, HF regex, transposed), compiled once.
_NAME_MAP = [
    (tf, _template_regex(tf), hf, _template_regex(hf), transposed)
    for tf, hf, transposed in _OUTER_NAMES + _layer_names()
]


def google_to_hf_name(name):
    """(HF key, transposed) of a google-style TF variable name; None if HF has no such weight."""
    for _, tf_regex, hf, _, transposed in _NAME_MAP:
        match = tf_regex.fullmatch(name)
        if match:
            return hf.format(**match.groupdict()), transposed
    return None


def hf_to_google_name(key):
    """(google-style TF name, transposed) of an HF state-dict key; None if ours has none."""
    for tf, _, _, hf_regex, transposed in _NAME_MAP:
        match = hf_regex.fullmatch(key)
        if match:
            return tf.format(**match.groupdict()), transposed
    return None


def google_heads(shapes):
    """(has MLM head, has SOP head, classifier labels or None) of TF names -> shapes.

    Works for both styles, whose heads have the same names: `cls/predictions/*` (masked LM),
    `cls/seq_relationship/*` (sentence order) and root `output_weights` [C,H] (classifier).
    """
    has_mlm = any(name.startswith("cls/predictions/") for name in shapes)
    has_sop = any(name.startswith("cls/seq_relationship/") for name in shapes)
    num_labels = int(shapes["output_weights"][0]) if "output_weights" in shapes else None
    return has_mlm, has_sop, num_labels


# ----------------------------------------------------------------------------- config

# Our activation names -> HF ACT2FN names. Our (and the TF originals') "gelu" is the tanh
# approximation, which HF calls "gelu_new"; HF's "gelu" is the exact erf GELU.
_HF_ACTIVATIONS = {
    "gelu": "gelu_new",
    "gelu_new": "gelu_new",
    "relu": "relu",
    "swish": "swish",
    "tanh": "tanh",
    "linear": "linear",
}
# The way back. Only functions modeling computes identically; "gelu" (erf) is not one of them.
_ACTIVATIONS_FROM_HF = {
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "relu": "relu",
    "swish": "swish",
    "silu": "swish",
    "tanh": "tanh",
    "linear": "linear",
}

# transformers.AlbertConfig's defaults: save_pretrained of older versions wrote only the
# values that differ from them.
HF_CONFIG_DEFAULTS = {
    "vocab_size": 30000,
    "embedding_size": 128,
    "hidden_size": 4096,
    "num_hidden_layers": 12,
    "num_hidden_groups": 1,
    "num_attention_heads": 64,
    "intermediate_size": 16384,
    "inner_group_num": 1,
    "hidden_act": "gelu_new",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
}
_OUR_LAYER_NORM_EPS = 1e-12  # modeling.layer_norm's epsilon, as in the TF originals


def hf_config_dict(config, embedding_size, num_groups, inner_group_num, num_labels, architectures):
    """The HF AlbertConfig fields for our model (tanh GELU, eps 1e-12, BertTokenizer)."""
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
        "layer_norm_eps": _OUR_LAYER_NORM_EPS,
        "tokenizer_class": "BertTokenizer",
        "pad_token_id": 0,
    }
    if num_labels:
        values["num_labels"] = num_labels
    return values


def read_hf_config_json(hf_dir):
    """The raw config.json of an HF model directory, checked to be an ALBERT model."""
    if not os.path.isdir(hf_dir):
        raise AlbertError(f"Hugging Face model directory not found: {hf_dir}")
    path = os.path.join(hf_dir, "config.json")
    if not os.path.isfile(path):
        raise AlbertError(
            f"{hf_dir} has no config.json: pass a directory written by save_pretrained "
            "(or downloaded from the Hugging Face Hub)"
        )
    values = _read_json(path)
    if not isinstance(values, dict):
        raise AlbertError(f"{path}: expected a JSON object")
    model_type = values.get("model_type")
    is_albert = model_type == "albert" or (
        model_type is None and any("Albert" in a for a in values.get("architectures") or [])
    )
    if not is_albert:
        architectures = ", ".join(values.get("architectures") or []) or "no architectures"
        raise AlbertError(
            f"{hf_dir} holds a {model_type or 'untyped'} model ({architectures}), not ALBERT: "
            'this toolkit reads ALBERT models only (config.json model_type "albert")'
        )
    return values


def read_hf_config(hf_dir):
    """config.json of an HF ALBERT directory -> our `modeling.AlbertConfig` (google style).

    Refuses (AlbertError) a non-ALBERT model, a SentencePiece-only tokenizer (English ALBERT;
    this toolkit tokenizes with WordPiece) and settings our model cannot compute exactly.
    """
    values = read_hf_config_json(hf_dir)
    find_vocab_file(hf_dir)  # refuses SentencePiece models
    return _albert_config(values, hf_dir)


def _albert_config(values, hf_dir):
    """HF config values -> google-style AlbertConfig, refusing what modeling cannot compute."""
    path = os.path.join(hf_dir, "config.json")
    hp = {key: values.get(key, default) for key, default in HF_CONFIG_DEFAULTS.items()}

    hf_activation = hp.pop("hidden_act")
    if hf_activation == "gelu":
        raise AlbertError(
            f'{path}: hidden_act "gelu" is the exact (erf) GELU, which modeling.py does not '
            'have: it computes the tanh approximation of the TF originals (HF "gelu_new"). '
            'If the weights were trained with the TF code, set hidden_act to "gelu_new".'
        )
    if hf_activation not in _ACTIVATIONS_FROM_HF:
        raise AlbertError(
            f"{path}: hidden_act {hf_activation!r} is not supported (supported: "
            f"{', '.join(sorted(_ACTIVATIONS_FROM_HF))})"
        )
    eps = hp.pop("layer_norm_eps")
    if not isinstance(eps, (int, float)) or eps > 1e-6:
        raise AlbertError(
            f"{path}: layer_norm_eps {eps!r} differs from our LayerNorm epsilon "
            f"{_OUR_LAYER_NORM_EPS} (that of the TF originals); the outputs would not match"
        )
    position_type = values.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise AlbertError(
            f"{path}: position_embedding_type {position_type!r} is not supported (ALBERT's "
            "learned absolute position embeddings only)"
        )
    try:
        return modeling.AlbertConfig(
            style="google", hidden_act=_ACTIVATIONS_FROM_HF[hf_activation], **hp
        )
    except AlbertError as e:
        raise AlbertError(f"{path}: {e}") from None


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AlbertError(f"{path}: not valid JSON ({e})") from None


# ----------------------------------------------------------------------------- tokenizer


def find_vocab_file(hf_dir):
    """The directory's WordPiece vocab.txt; None if it has no tokenizer files at all.

    A SentencePiece tokenizer (spiece.model, or a tokenizer.json whose model is not WordPiece)
    without vocab.txt is refused: albert_zh and this toolkit use BERT's WordPiece vocabulary.
    """
    vocab_file = os.path.join(hf_dir, "vocab.txt")
    if os.path.isfile(vocab_file):
        return vocab_file
    tokenizer_model = None
    tokenizer_json = os.path.join(hf_dir, "tokenizer.json")
    if os.path.isfile(tokenizer_json):
        tokenizer_model = (_read_json(tokenizer_json).get("model") or {}).get("type")
    if os.path.isfile(os.path.join(hf_dir, "spiece.model")) or tokenizer_model not in (
        None,
        "WordPiece",
    ):
        raise AlbertError(
            f"{hf_dir} has a SentencePiece tokenizer (spiece.model / tokenizer.json) and no "
            "vocab.txt, as English ALBERT: this toolkit tokenizes with BERT's WordPiece "
            "(tokenization.py, the albert_zh vocab.txt), so it cannot feed this model"
        )
    return None


def read_do_lower_case(hf_dir):
    """tokenizer_config.json's do_lower_case (None when it does not say)."""
    path = os.path.join(hf_dir, "tokenizer_config.json")
    if not os.path.isfile(path):
        return None
    value = _read_json(path).get("do_lower_case")
    return value if isinstance(value, bool) else None


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


# ----------------------------------------------------------------------------- weight files

# (single file, sharded index) in the order transformers itself prefers them.
WEIGHT_FILES = [
    ("model.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json"),
]


def read_hf_weights(hf_dir):
    """dict HF state-dict key -> numpy array (floats as float32) of an HF model directory.

    Reads `model.safetensors` with the safetensors package's numpy API (no torch), or
    `pytorch_model.bin` with torch, or their sharded forms (`*.index.json`).
    """
    return _read_weights_and_sources(hf_dir)[0]


def _read_weights_and_sources(hf_dir):
    """(key -> array, key -> the file it came from, for error messages)."""
    for single, index in WEIGHT_FILES:
        if os.path.isfile(os.path.join(hf_dir, single)):
            files, expected = [single], None
        elif os.path.isfile(os.path.join(hf_dir, index)):
            files, expected = _shards(hf_dir, index)
        else:
            continue
        load = _load_safetensors if single.endswith(".safetensors") else _load_torch_pickle
        weights, sources = {}, {}
        for file_name in files:
            for key, value in load(os.path.join(hf_dir, file_name)).items():
                weights[key] = value
                sources[key] = file_name
        if expected:
            absent = [key for key in expected if sources.get(key) != expected[key]]
            if absent:
                raise AlbertError(
                    f"{os.path.join(hf_dir, index)} lists {absent[0]} in {expected[absent[0]]}, "
                    f"which does not hold it ({len(absent)} such weights): the shards are "
                    "incomplete or from another save"
                )
        return weights, sources
    other = [f for f in ("tf_model.h5", "flax_model.msgpack") if os.path.isfile(f"{hf_dir}/{f}")]
    hint = f" ({other[0]} is a TF-Keras/Flax save: re-save it from PyTorch)" if other else ""
    raise AlbertError(
        f"{hf_dir} has no model weights: expected model.safetensors, "
        f"model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json{hint}"
    )


def _shards(hf_dir, index):
    """(shard file names, key -> shard) of a sharded checkpoint's index, all files present."""
    path = os.path.join(hf_dir, index)
    weight_map = _read_json(path).get("weight_map") if os.path.isfile(path) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise AlbertError(f"{path}: no weight_map (not a sharded checkpoint index)")
    files = sorted(set(weight_map.values()))
    for file_name in files:
        if not os.path.isfile(os.path.join(hf_dir, file_name)):
            raise AlbertError(f"{path} lists shard {file_name}, which is missing from {hf_dir}")
    return files, weight_map


def _as_float32(value):
    """Floating tensors as float32 (exact for fp16/bf16); integer buffers unchanged."""
    return value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value


def _load_safetensors(path):
    try:
        import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy, for bf16 checkpoints)
        import safetensors
        import safetensors.numpy
    except ImportError as e:
        raise AlbertError(
            f"reading {os.path.basename(path)} needs the {e.name} package: "
            f"pip install {e.name.replace('_', '-')}"
        ) from None
    try:
        tensors = safetensors.numpy.load_file(path)
    except (safetensors.SafetensorError, OSError, ValueError, TypeError) as e:
        raise AlbertError(f"cannot read {path} (truncated or not safetensors?): {e}") from None
    return {key: _as_float32(value) for key, value in tensors.items()}


def _load_torch_pickle(path):
    try:
        import torch
    except ImportError:
        raise AlbertError(
            f"{os.path.basename(path)} is a PyTorch pickle and reading it needs torch: "
            "pip install torch (or re-save the model as model.safetensors)"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise AlbertError(f"cannot read {path} (truncated or not a state dict?): {e}") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise AlbertError(f"{path} is not a state dict of tensors")
    return {
        key: (value.float() if value.is_floating_point() else value).numpy()
        for key, value in state.items()
    }


def save_hf_weights(state, output_dir):
    """Write an HF state dict (key -> numpy array) as output_dir/model.safetensors (no torch)."""
    import safetensors.numpy

    path = os.path.join(output_dir, "model.safetensors")
    # "format": "pt" is what transformers checks before loading a safetensors file.
    safetensors.numpy.save_file(state, path, metadata={"format": "pt"})
    return path


# ----------------------------------------------------------------------------- groups


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
                "(floating-point rounding), so the two cannot compute the same model."
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


# ----------------------------------------------------------------------------- ours -> HF

_PRELN_MESSAGE = (
    'brightmart pre-LN models (ln_type "preln") cannot be converted: HF transformers\' '
    "AlbertLayer is post-LN only, so no HF ALBERT computes the same function; serve it with "
    "export_savedmodel.py instead"
)

# brightmart layer scopes -> google layer scopes. Order matters: the longer
# `attention/output/...` and `output/LayerNorm` rules come before `output/dense`.
_BRIGHTMART_LAYER_RENAMES = [
    ("attention/self/", "attention_1/self/"),
    ("attention/output/dense/", "attention_1/output/dense/"),
    ("attention/output/LayerNorm/", "LayerNorm/"),
    ("intermediate/dense/", "ffn_1/intermediate/dense/"),
    ("output/dense/", "ffn_1/intermediate/output/dense/"),
    ("output/LayerNorm/", "LayerNorm_1/"),
]


def check_hf_representable(config, style):
    """Refuse brightmart pre-LN: HF's AlbertLayer is post-LN only."""
    if style == "brightmart" and config.ln_type == "preln":
        raise AlbertError(_PRELN_MESSAGE)


def fold_brightmart_into_google(weights, config):
    """Rewrite brightmart post-LN weights as an equivalent google-style model with E = H.

    HF has no `word_embeddings_2` projection and puts position/type embeddings at width E, so
    `word_embeddings @ word_embeddings_2` becomes a [V,H] table, E becomes H, the E->H
    projection becomes the identity, and the H->H MLM transform matches HF's H->"E" one.
    """
    check_hf_representable(config, "brightmart")
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
    folded.update(identity_projection(config.hidden_size))
    return folded


def identity_projection(hidden_size):
    """The E->H projection HF always applies, as the identity (for E == H)."""
    return {
        "bert/encoder/embedding_hidden_mapping_in/kernel": np.eye(hidden_size, dtype=np.float32),
        "bert/encoder/embedding_hidden_mapping_in/bias": np.zeros(hidden_size, np.float32),
    }


def google_to_hf_state_dict(weights):
    """Map google-style TF names to HF state-dict keys, transposing dense kernels."""
    state = {}
    for name, value in weights.items():
        found = google_to_hf_name(name)
        if found is None:
            if name.startswith("loss/"):
                raise AlbertError(
                    f"checkpoint variable {name} (brightmart pre-LN classifier) has "
                    "no place in HF's ALBERT; it cannot be converted."
                )
            raise AlbertError(
                f"checkpoint variable {name} has no HF transformers equivalent; "
                "is this an ALBERT checkpoint?"
            )
        key, transposed = found
        state[key] = np.ascontiguousarray(value.T if transposed else value, np.float32)
    return state


@dataclasses.dataclass
class HFLayout:
    """Our weights in HF's layout, ready to be written as an HF model directory."""

    state: dict  # HF state-dict key -> float32 numpy array
    config_values: dict  # transformers.AlbertConfig keyword arguments
    architectures: list  # the HF classes the directory loads into
    filled_groups: list  # groups no layer uses, filled with copies (HF builds all of them)
    dropped_heads: list  # our heads one HF class cannot hold next to the others


def to_hf_layout(weights, config, style, token_level=False, id2label=None):
    """Our model's weights (either style, TF names) -> HFLayout.

    One HF directory is one HF class: a classifier wins over the pretraining heads (HF sizes
    the SOP head by num_labels too), MLM + SOP is AlbertForPreTraining, MLM alone
    AlbertForMaskedLM; a lone SOP head has no HF class and is left out. A classifier is
    AlbertForSequenceClassification, or AlbertForTokenClassification when `token_level`
    (both keep our root output_weights as `classifier`; the pooler stays in the state so
    that AlbertModel loads the directory too). `id2label`: label names, written to the config.
    """
    if style == "brightmart":
        weights = fold_brightmart_into_google(weights, config)
        embedding_size = config.hidden_size
        # 1 group (layer_shared) or num_hidden_layers groups (unshared `layer_{i}`).
        num_groups = 1 if config.share_parameter_across_layers else config.num_hidden_layers
        inner_group_num = 1
    else:
        weights = dict(weights)
        embedding_size = config.embedding_size
        num_groups, inner_group_num = config.num_hidden_groups, config.inner_group_num
        if "bert/encoder/embedding_hidden_mapping_in/kernel" not in weights:
            # Google's code omits the projection when E == H; HF always applies it.
            weights.update(identity_projection(config.hidden_size))

    has_mlm, has_sop, num_labels = google_heads({n: v.shape for n, v in weights.items()})
    if num_labels and token_level:
        architectures, keep = ["AlbertForTokenClassification"], ("output_",)
    elif num_labels:
        architectures, keep = ["AlbertForSequenceClassification"], ("output_",)
    elif has_mlm and has_sop:
        architectures, keep = ["AlbertForPreTraining"], ("cls/",)
    elif has_mlm:
        architectures, keep = ["AlbertForMaskedLM"], ("cls/predictions/",)
    else:
        architectures, keep = ["AlbertModel"], ()
    heads = {"cls/predictions/": has_mlm, "cls/seq_relationship/": has_sop}
    dropped = [p.rstrip("/") for p, present in heads.items() if present and not p.startswith(keep)]
    weights = {
        n: v for n, v in weights.items() if n.startswith(("bert/", *keep)) or n.startswith("loss/")
    }

    used_groups = hf_group_layout(config.num_hidden_layers, num_groups)
    state = google_to_hf_state_dict(weights)
    filled = fill_unused_groups(state, num_groups, used_groups)
    values = hf_config_dict(
        config, embedding_size, num_groups, inner_group_num, num_labels, architectures
    )
    if num_labels and id2label:
        values["id2label"] = {i: str(name) for i, name in enumerate(id2label)}
        values["label2id"] = {str(name): i for i, name in enumerate(id2label)}
    return HFLayout(state, values, architectures, filled, dropped)


# ----------------------------------------------------------------------------- HF -> ours

SUPPORTED_ARCHITECTURES = (
    "AlbertModel",
    "AlbertForPreTraining",
    "AlbertForMaskedLM",
    "AlbertForSequenceClassification",
    "AlbertForTokenClassification",
)

# HF buffers saved by some transformers versions; they are not weights.
_BUFFER_SUFFIXES = (".position_ids", ".token_type_ids")


@dataclasses.dataclass
class HFCheckpoint:
    """An HF ALBERT directory, read into our terms (google style, original TF names)."""

    hf_dir: str
    config: modeling.AlbertConfig  # google style
    weights: dict  # google-style TF variable name -> float32 numpy array
    architecture: str  # the HF class the directory was saved from (or the one its keys imply)
    # Any of "masked_lm", "sentence_order", "sequence_classification", "token_classification".
    heads: list
    num_labels: int | None
    id2label: dict | None  # label id -> name, for classifiers
    vocab_file: str | None  # the directory's WordPiece vocab.txt, if it has one
    do_lower_case: bool | None  # from tokenizer_config.json, if it says
    notes: list  # what was left out or filled in, for the user


def read_hf_checkpoint(hf_dir):
    """Read an HF ALBERT directory (config, weights, vocab) as google-style TF weights.

    Handles AlbertModel, AlbertForPreTraining, AlbertForMaskedLM,
    AlbertForSequenceClassification and AlbertForTokenClassification saves, with or without
    the `albert.` prefix, and the directories convert_albert_tf_checkpoint_to_pytorch.py
    writes (brightmart ones read back as google style with E = H).
    """
    hf_dir = os.fspath(hf_dir)
    values = read_hf_config_json(hf_dir)
    vocab_file = find_vocab_file(hf_dir)  # refuses SentencePiece models
    config = _albert_config(values, hf_dir)
    architecture = _declared_architecture(values, hf_dir)
    state, sources = _read_weights_and_sources(hf_dir)
    state = _normalize_keys(state, sources)
    if architecture is None:
        architecture = _architecture_from_keys(state)
    weights, notes = hf_state_to_google(state, config, sources, hf_dir)

    has_mlm, has_sop, num_labels = google_heads({n: v.shape for n, v in weights.items()})
    heads = [
        name for name, present in (("masked_lm", has_mlm), ("sentence_order", has_sop)) if present
    ]
    id2label = None
    if num_labels:
        token_level = architecture == "AlbertForTokenClassification"
        heads.append("token_classification" if token_level else "sequence_classification")
        id2label = _id2label(values, num_labels, hf_dir)
    return HFCheckpoint(
        hf_dir=hf_dir,
        config=config,
        weights=weights,
        architecture=architecture,
        heads=heads,
        num_labels=num_labels,
        id2label=id2label,
        vocab_file=vocab_file,
        do_lower_case=read_do_lower_case(hf_dir),
        notes=notes,
    )


def _declared_architecture(values, hf_dir):
    """The supported HF class config.json names; refuse ALBERT classes we have no head for."""
    declared = values.get("architectures") or []
    for name in declared:
        if name in SUPPORTED_ARCHITECTURES:
            return name
    if declared:
        raise AlbertError(
            f"{hf_dir} is a {declared[0]}: its head has no counterpart here (supported: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)})"
        )
    return None


def _architecture_from_keys(state):
    """The HF class a state dict was saved from, for configs without `architectures`."""
    if "classifier.weight" in state:
        # AlbertForTokenClassification is built without the pooler.
        pooled = "albert.pooler.weight" in state
        return "AlbertForSequenceClassification" if pooled else "AlbertForTokenClassification"
    if "sop_classifier.classifier.weight" in state:
        return "AlbertForPreTraining"
    if "predictions.bias" in state or "predictions.decoder.bias" in state:
        return "AlbertForMaskedLM"
    return "AlbertModel"


def _normalize_keys(state, sources):
    """Give a bare AlbertModel's keys the `albert.` prefix and drop saved buffers."""
    normalized = {}
    for key, value in state.items():
        if key.endswith(_BUFFER_SUFFIXES):
            continue
        if key.startswith(("embeddings.", "encoder.", "pooler.")):
            sources["albert." + key] = sources[key]
            key = "albert." + key
        normalized[key] = value
    return normalized


def _id2label(values, num_labels, hf_dir):
    """{id: name} of a classifier from config.json (HF's LABEL_i when it lists none)."""
    raw = values.get("id2label")
    if not raw:
        return {i: f"LABEL_{i}" for i in range(num_labels)}
    try:
        id2label = {int(i): str(name) for i, name in raw.items()}
    except (AttributeError, ValueError):
        raise AlbertError(f"{hf_dir}/config.json: id2label must map label ids to names") from None
    if sorted(id2label) != list(range(num_labels)):
        raise AlbertError(
            f"{hf_dir}/config.json: id2label has {len(id2label)} labels but classifier.weight "
            f"has {num_labels} rows"
        )
    return id2label


def hf_state_to_google(state, config, sources=None, hf_dir="the HF directory"):
    """HF state dict (keys with the `albert.` prefix) -> (google-style TF weights, notes).

    Checks every tensor's shape against `config`, drops what our google model does not build
    (groups no layer uses, the identity E->H projection when E == H, the tied MLM decoder) and
    fills the pooler that AlbertForMaskedLM / AlbertForTokenClassification saves lack.
    """
    sources = sources or {}

    def where(key):
        return os.path.join(hf_dir, sources.get(key, "?"))

    state = _check_tied_decoder(dict(state), where)
    weights, hf_key = {}, {}
    unknown = []
    for key, value in state.items():
        found = hf_to_google_name(key)
        if found is None:
            unknown.append(key)
            continue
        name, transposed = found
        weights[name] = np.ascontiguousarray(value.T if transposed else value, np.float32)
        hf_key[name] = (key, transposed)
    if unknown:
        raise AlbertError(
            f"{where(unknown[0])}: {len(unknown)} weight(s) have no place in our ALBERT models "
            f"(first: {unknown[0]}); is this an ALBERT checkpoint of a supported class?"
        )

    expected = _hf_layout_shapes(config, weights)
    for name in sorted(set(weights) - set(expected)):
        key = hf_key[name][0]
        raise AlbertError(
            f"{where(key)}: {key} does not fit config.json (num_hidden_groups="
            f"{config.num_hidden_groups}, inner_group_num={config.inner_group_num})"
        )
    for name, shape in expected.items():
        if name in weights and list(weights[name].shape) != shape:
            key, transposed = hf_key[name]
            want, found = (
                (shape[::-1], list(weights[name].shape)[::-1])
                if transposed
                else (shape, list(weights[name].shape))
            )
            raise AlbertError(
                f"{where(key)}: {key} has shape {found} but config.json implies {want} "
                "(the config does not belong to these weights, or the file is damaged)"
            )

    notes = []
    pooler = ("bert/pooler/dense/kernel", "bert/pooler/dense/bias")
    if not any(name in weights for name in pooler):
        # AlbertForMaskedLM and AlbertForTokenClassification have no pooler; every model of
        # ours does. Initialise it as a fresh model would (HF does the same when it loads
        # such a save into a class with a pooler).
        weights.update(_fresh_pooler(config))
        notes.append(
            "the HF model has no pooler (AlbertForMaskedLM / AlbertForTokenClassification): "
            "bert/pooler/dense was initialised randomly (truncated normal, initializer_range)"
        )
    missing = [name for name in expected if name not in weights]
    if missing:
        hf_names = [google_to_hf_name(name)[0] for name in missing]
        raise AlbertError(
            f"{hf_dir} lacks {len(missing)} weight(s) its config.json implies (first: "
            f"{hf_names[0]}); the save is incomplete or the config is not its own"
        )

    used_groups = hf_group_layout(config.num_hidden_layers, config.num_hidden_groups)
    unused = [g for g in range(config.num_hidden_groups) if g not in used_groups]
    if unused:
        prefixes = tuple(f"bert/encoder/transformer/group_{g}/" for g in unused)
        weights = {n: v for n, v in weights.items() if not n.startswith(prefixes)}
        notes.append(f"groups {unused} are used by no layer: left out (our models skip them)")
    if config.embedding_size == config.hidden_size:
        weights = _drop_identity_projection(weights, config, where)
    return weights, notes


def _check_tied_decoder(state, where):
    """Drop HF's tied MLM decoder copies after checking they are the tied tensors.

    Our MLM head always multiplies by the word embeddings and adds `output_bias`, as HF's
    decoder does when tied (safetensors saves omit the copies, `.bin` ones keep them).
    """
    tied = [
        ("predictions.decoder.weight", "albert.embeddings.word_embeddings.weight"),
        ("predictions.decoder.bias", "predictions.bias"),
    ]
    for copy_key, key in tied:
        value = state.pop(copy_key, None)
        if value is None:
            continue
        if key not in state:
            state[key] = value
        elif not np.array_equal(value, state[key]):
            raise AlbertError(
                f"{where(copy_key)}: {copy_key} differs from {key} (an untied MLM decoder, "
                "tie_word_embeddings false): our MLM head always reuses the tied tensors"
            )
    return state


def _drop_identity_projection(weights, config, where):
    """With E == H our google model has no E->H projection; HF's must then be the identity."""
    kernel = weights.pop("bert/encoder/embedding_hidden_mapping_in/kernel", None)
    bias = weights.pop("bert/encoder/embedding_hidden_mapping_in/bias", None)
    identity = identity_projection(config.hidden_size)
    if kernel is not None and not (
        np.array_equal(kernel, identity["bert/encoder/embedding_hidden_mapping_in/kernel"])
        and np.array_equal(bias, identity["bert/encoder/embedding_hidden_mapping_in/bias"])
    ):
        key = "albert.encoder.embedding_hidden_mapping_in.weight"
        raise AlbertError(
            f"{where(key)}: embedding_size == hidden_size == {config.hidden_size} but "
            f"{key} is not the identity: Google's ALBERT (and modeling.py) applies no "
            "projection when E == H, so this model cannot be represented"
        )
    return weights


def _hf_layout_shapes(config, weights):
    """TF name -> shape of everything an HF model of `config` holds, heads as in `weights`.

    Includes all groups (HF builds them even if no layer uses one) and the E->H projection
    (HF always has it).
    """
    V, E, H, F = (
        config.vocab_size,
        config.embedding_size,
        config.hidden_size,
        config.intermediate_size,
    )
    shapes = {
        "bert/embeddings/word_embeddings": [V, E],
        "bert/embeddings/token_type_embeddings": [config.type_vocab_size, E],
        "bert/embeddings/position_embeddings": [config.max_position_embeddings, E],
        "bert/embeddings/LayerNorm/gamma": [E],
        "bert/embeddings/LayerNorm/beta": [E],
        "bert/encoder/embedding_hidden_mapping_in/kernel": [E, H],
        "bert/encoder/embedding_hidden_mapping_in/bias": [H],
        "bert/pooler/dense/kernel": [H, H],
        "bert/pooler/dense/bias": [H],
    }
    kernels = {
        "query": [H, H],
        "key": [H, H],
        "value": [H, H],
        "attention_output": [H, H],
        "ffn_in": [H, F],
        "ffn_out": [F, H],
    }
    for g in range(config.num_hidden_groups):
        for k in range(config.inner_group_num):
            scope = _TF_LAYER.format(g=g, k=k)
            for role in _HF_LAYER_MODULES:
                if role in kernels:
                    leaves = {"kernel": kernels[role], "bias": [kernels[role][1]]}
                else:
                    leaves = {"gamma": [H], "beta": [H]}
                for leaf, shape in leaves.items():
                    shapes[modeling.layer_variable_name("google", scope, f"{role}/{leaf}")] = shape
    has_mlm, has_sop, num_labels = google_heads({n: v.shape for n, v in weights.items()})
    if has_mlm:
        shapes.update(
            {
                "cls/predictions/transform/dense/kernel": [H, E],
                "cls/predictions/transform/dense/bias": [E],
                "cls/predictions/transform/LayerNorm/gamma": [E],
                "cls/predictions/transform/LayerNorm/beta": [E],
                "cls/predictions/output_bias": [V],
            }
        )
    if has_sop:
        shapes["cls/seq_relationship/output_weights"] = [2, H]
        shapes["cls/seq_relationship/output_bias"] = [2]
    if num_labels or "output_bias" in weights:
        num_labels = num_labels or len(weights["output_bias"])
        shapes["output_weights"] = [num_labels, H]
        shapes["output_bias"] = [num_labels]
    return shapes


def _fresh_pooler(config, seed=0):
    """A pooler as modeling initialises one: truncated normal kernel (2 stddev), zero bias."""
    rng = np.random.default_rng(seed)
    shape = (config.hidden_size, config.hidden_size)
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.standard_normal(outside.sum())
        outside = np.abs(values) > 2.0
    return {
        "bert/pooler/dense/kernel": (values * config.initializer_range).astype(np.float32),
        "bert/pooler/dense/bias": np.zeros(config.hidden_size, np.float32),
    }
