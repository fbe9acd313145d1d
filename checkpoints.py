"""Checkpoints: the one place that reads, writes, finds and trusts them.

Every script goes through this module to turn a path into weights:

* Files. The originals' TF1 name-based format (`prefix.index` + `prefix.data-*`), variables
  under their original names, so released albert_zh checkpoints of both styles load by name
  and ours load in the original code. `save_tensors` writes one, `read_tensors` reads one with
  every name and shape checked first, and `load_checkpoint` fills a model from one.
* Which file. `resolve_checkpoint_path` turns a prefix, a `.index`/`.data` file name or a
  directory into a prefix; a model directory means its best checkpoint (`model.ckpt-best`,
  kept by `BestCheckpointKeeper`) if it has one, else its newest complete one.
* Hugging Face directories. Wherever a checkpoint is accepted, an HF ALBERT directory
  (config.json + model.safetensors / pytorch_model.bin, sharded or not) is too: it is read
  once by hf_checkpoint.read_hf_checkpoint (cached until its files change) and presented
  under the google-style TF names, so every reader below works on both. `model_config`,
  `tokenizer_files` and `label_names` give the config, vocab and class names that come with
  a checkpoint directory of either kind.
* What is in it. `checkpoint_heads` says which heads a checkpoint holds (a root
  `output_weights` is a sequence classifier, or a token classifier when the model_info.json
  beside it says so or a CRF is there); `build_models` builds the encoder plus exactly those
  heads around ONE shared encoder and loads them.
* Training runs. `output_dir/model.ckpt-<step>` files, the `checkpoint` state file (rewritten
  atomically, after the files it names are complete), pruning, and resumption that trusts a
  checkpoint only after reading it whole (`readable_step_checkpoints`): a damaged newest
  checkpoint is skipped with a warning and the one before it is used.
* Self-contained output directories. `write_model_info` / `read_model_info`: the config copy,
  the vocab copy and `model_info.json` (labels, max_seq_length, style...) next to the weights.
* One writer per output directory: `OutputDirLock`.
"""

import collections
import dataclasses
import json
import os
import re
import socket
import time

import tensorflow as tf
from absl import logging

import hf_checkpoint
import modeling
import ner_data
from errors import AlbertError, first_line

BEST_CHECKPOINT = "model.ckpt-best"
CONFIG_COPY = "albert_config.json"
VOCAB_COPY = "vocab.txt"
MODEL_INFO_FILE = "model_info.json"
LEGACY_MODEL_INFO_FILE = "classifier_info.json"  # what run_classifier.py wrote before
TOKEN_CLASSIFICATION = "token_classification"  # model_info.json "task" of run_ner.py models
STATE_FILE = "checkpoint"
LOCK_FILE = "albert_zh.lock"
TRAINING_STATE_PREFIX = "training_state/global_step/"  # ignored by every checkpoint reader

# Optimizer slots and bookkeeping that live in training checkpoints but are not model weights.
NON_MODEL_VARIABLE_PATTERN = re.compile(
    r"(/adam_m|/adam_v|/lamb_m|/lamb_v)$|^global_step$|AdamWeightDecayOptimizer|^training_state/"
)
_STEP_CHECKPOINT = re.compile(r"^model\.ckpt-(\d+)\.index$")
_STEP_DATA = re.compile(r"^model\.ckpt-(\d+)\.data-\d{5}-of-\d{5}$")
_DATA_SUFFIX = re.compile(r"\.data-\d{5}-of-\d{5}")
_CORRUPT_ERRORS = (tf.errors.OpError, ValueError, IndexError)
HF_CONFIG = "config.json"
# File names that mean "this directory is an HF save": weights, single or sharded.
_HF_WEIGHT_FILES = tuple(name for pair in hf_checkpoint.WEIGHT_FILES for name in pair)
_HF_CACHE_SIZE = 2  # directories whose weights stay in memory (a script uses one at a time)


# ----------------------------------------------------------------------------------------------
# Reading and writing one checkpoint.
# ----------------------------------------------------------------------------------------------


def resolve_checkpoint_path(path):
    """A checkpoint prefix from a prefix, a `.index`/`.data-*` file name or a directory.

    A directory resolves to its `model.ckpt-best` if present (a run_classifier.py output),
    else to the newest checkpoint its `checkpoint` state file names, else to its only
    `*.index` file (a released model's folder). A Hugging Face directory (or one of its
    weight files) resolves to the directory itself.
    """
    if path is None:
        return None
    path = os.fspath(path)
    hf_dir = hf_directory_of(path)
    if hf_dir:
        return hf_dir
    match = re.match(r"(.*)\.(index|meta|data-\d{5}-of-\d{5})$", path)
    if match:
        path = match.group(1)
    if os.path.isdir(path):
        directory = path
        best = os.path.join(directory, BEST_CHECKPOINT)
        if os.path.exists(best + ".index"):
            path = best
        else:
            path = latest_checkpoint(directory)
        if path is None:
            indexes = sorted(f for f in os.listdir(directory) if f.endswith(".index"))
            if len(indexes) != 1:
                raise AlbertError(
                    f"no checkpoint found in directory {directory}: expected a `checkpoint` "
                    "file, exactly one *.index file, or a Hugging Face model (config.json + "
                    "model.safetensors or pytorch_model.bin); pass the checkpoint prefix instead"
                )
            path = os.path.join(directory, indexes[0][: -len(".index")])
    if not os.path.exists(path + ".index"):
        if re.fullmatch(r"[\w.-]+/[\w.-]+", path) and not os.path.exists(os.path.dirname(path)):
            raise AlbertError(
                f"checkpoint not found: {path} is not a local path. If it is a Hugging Face "
                "model id: this toolkit never downloads, so fetch it first (huggingface-cli "
                f"download {path} --local-dir DIR) and pass DIR"
            )
        raise AlbertError(
            f"checkpoint not found: {path}.index does not exist (pass the prefix, e.g. "
            "prev_trained_model/albert_tiny/albert_model.ckpt)"
        )
    return path


def checkpoint_variable_names(ckpt_path):
    """dict name -> shape (list) of every variable stored in a checkpoint."""
    path = resolve_checkpoint_path(ckpt_path)
    if is_hf_directory(path):
        return _shapes(read_hf_directory(path).weights)
    try:
        return {name: list(shape) for name, shape in tf.train.list_variables(path)}
    except _CORRUPT_ERRORS as e:
        raise AlbertError(f"cannot read checkpoint {path}: {first_line(e)}") from None


def read_tensors(ckpt_path, expected=None, names=None):
    """dict name -> NumPy array, every value read before any is returned.

    `expected`: dict name -> shape that must all be present with these shapes (AlbertError
    naming the first offender otherwise). `names`: read only these (default: `expected`'s
    names, else everything). A truncated or corrupt file is one AlbertError, never a partial
    result, so callers can assign the values knowing the whole checkpoint was readable.
    """
    path = resolve_checkpoint_path(ckpt_path)
    if is_hf_directory(path):
        weights = read_hf_directory(path).weights
        stored, get_tensor = _shapes(weights), weights.__getitem__
    else:
        try:
            reader = tf.train.load_checkpoint(path)
            stored = reader.get_variable_to_shape_map()
        except _CORRUPT_ERRORS as e:
            raise AlbertError(f"cannot read checkpoint {path}: {first_line(e)}") from None
        get_tensor = reader.get_tensor
    if expected:
        missing = [n for n in expected if n not in stored]
        if missing:
            raise AlbertError(
                f"{path} lacks {len(missing)} variable(s), e.g. {missing[0]}: was it written "
                "with another --optimizer or model?"
            )
        for name, shape in expected.items():
            if list(stored[name]) != list(shape):
                raise AlbertError(
                    f"{path}: {name} has shape {list(stored[name])} but {list(shape)} is expected"
                )
    if names is None:
        names = list(expected) if expected else sorted(stored)
    absent = [name for name in names if name not in stored]
    if absent:
        raise AlbertError(f"{path} has no variable {absent[0]} ({len(absent)} missing)")
    values = {}
    for name in names:
        try:
            values[name] = get_tensor(name)
        except _CORRUPT_ERRORS as e:
            raise AlbertError(
                f"checkpoint {path} is truncated or corrupt (reading {name}: {first_line(e)}); "
                "copy or download it again"
            ) from None
    return values


def save_tensors(named_tensors, path_prefix):
    """Write `{name: tensor}` as a TF1 name-based checkpoint (`prefix.index` + `prefix.data-*`).

    The file is what tf.compat.v1.train.Saver writes, so `tf.train.list_variables`, the original
    code and HF's converter read it. The `checkpoint` state file is left to the caller.
    """
    names = sorted(named_tensors)
    tensors = [tf.convert_to_tensor(named_tensors[n]) for n in names]
    directory = os.path.dirname(os.fspath(path_prefix))
    if directory:
        os.makedirs(directory, exist_ok=True)
    tf.raw_ops.SaveV2(
        prefix=os.fspath(path_prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=tensors,
    )
    return os.fspath(path_prefix)


def save_model(model, path_prefix, global_step):
    """A model's weights + `global_step` under the original names (no optimizer slots)."""
    tensors = {name: var.read_value() for name, var in model.named_variables().items()}
    tensors["global_step"] = tf.constant(int(global_step), tf.int64)
    return save_tensors(tensors, path_prefix)


def global_step_of(ckpt_path):
    """The `global_step` stored in a checkpoint (0 when it has none)."""
    if "global_step" not in checkpoint_variable_names(ckpt_path):
        return 0
    return int(read_tensors(ckpt_path, names=["global_step"])["global_step"])


# ----------------------------------------------------------------------------------------------
# Hugging Face directories as checkpoints.
# ----------------------------------------------------------------------------------------------


def is_hf_directory(path):
    """Whether `path` is a Hugging Face model directory rather than a TF checkpoint directory.

    It is when it has config.json and HF weights, or a config.json that names an HF model
    type or class (so a non-ALBERT or weightless HF save gets hf_checkpoint's error that says
    what it is, not "no checkpoint found"). A directory with a TF checkpoint never is.
    """
    if not path or not os.path.isdir(path):
        return False
    if not os.path.isfile(os.path.join(path, HF_CONFIG)):
        return False
    names = os.listdir(path)
    if any(name in _HF_WEIGHT_FILES for name in names):
        return True
    if STATE_FILE in names or any(name.endswith(".index") for name in names):
        return False
    try:
        with open(os.path.join(path, HF_CONFIG), encoding="utf-8") as f:
            values = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(values, dict) and ("model_type" in values or "architectures" in values)


def hf_directory_of(path):
    """The HF directory `path` names (the directory, or one of its weight files), else None."""
    if not path:
        return None
    path = os.path.normpath(os.fspath(path))
    if os.path.basename(path) in _HF_WEIGHT_FILES:
        path = os.path.dirname(path) or "."
    return path if is_hf_directory(path) else None


_hf_cache = collections.OrderedDict()  # absolute path -> (files' stamp, HFCheckpoint)


def read_hf_directory(hf_dir):
    """hf_checkpoint.read_hf_checkpoint(hf_dir), read once and cached until its files change.

    Every reader of this module asks for the same directory several times (names, heads,
    values); the cache makes that one read. What the reader left out or filled in (e.g. the
    pooler an AlbertForMaskedLM save lacks) is logged once, when it is read.
    """
    key = os.path.abspath(hf_dir)
    stamp = sorted(
        (entry.name, entry.stat().st_mtime_ns, entry.stat().st_size)
        for entry in os.scandir(key)
        if entry.is_file()
    )
    cached = _hf_cache.get(key)
    if cached and cached[0] == stamp:
        _hf_cache.move_to_end(key)
        return cached[1]
    checkpoint = hf_checkpoint.read_hf_checkpoint(key)
    for note in checkpoint.notes:
        logging.warning("%s: %s", hf_dir, note)
    logging.info(
        "read Hugging Face %s from %s (%d weights, heads: %s)",
        checkpoint.architecture,
        hf_dir,
        len(checkpoint.weights),
        ", ".join(checkpoint.heads) or "none",
    )
    _hf_cache[key] = (stamp, checkpoint)
    while len(_hf_cache) > _HF_CACHE_SIZE:
        _hf_cache.popitem(last=False)
    return checkpoint


def _shapes(weights):
    return {name: list(value.shape) for name, value in weights.items()}


# ----------------------------------------------------------------------------------------------
# Styles and loading into a model.
# ----------------------------------------------------------------------------------------------


def style_from_names(names):
    """ "brightmart" or "google" from checkpoint variable names (None if unclear)."""
    if any("word_embeddings_2" in n or "/encoder/layer_" in n for n in names):
        return "brightmart"
    if any("/encoder/transformer/" in n or "embedding_hidden_mapping_in" in n for n in names):
        return "google"
    return None


def detect_checkpoint_style(ckpt_path):
    """ "brightmart" or "google" from the variable names of a checkpoint (None if unclear).

    A Hugging Face directory is google style: HF's ALBERT is Google's layout.
    """
    if hf_directory_of(ckpt_path):
        return "google"
    return style_from_names(checkpoint_variable_names(ckpt_path))


def resolve_style(config, init_checkpoint=None, style_flag=None):
    """The style to build: explicit flag, else the checkpoint's, else the config's, else google."""
    if style_flag:
        if style_flag not in modeling.STYLES:
            raise AlbertError(
                f"--style must be one of {', '.join(modeling.STYLES)}, got {style_flag!r}"
            )
        if style_flag != "google" and hf_directory_of(init_checkpoint):
            raise AlbertError(
                f"{init_checkpoint} is a Hugging Face directory, whose weights are google "
                f"style: drop --style {style_flag}"
            )
        return style_flag
    if init_checkpoint:
        detected = detect_checkpoint_style(init_checkpoint)
        if detected:
            return detected
    return config.style or "google"


class LoadReport(collections.namedtuple("LoadReport", ["path", "loaded", "missing_allowed"])):
    """What `load_checkpoint` did: variables restored and (allowed) variables left as initialised."""


def load_checkpoint(model, ckpt_path, allow_missing=("cls/", "output_", "loss/")):
    """Restore every model variable from a name-based checkpoint (either original style).

    Optimizer slots, `global_step` and variables the model does not have outside `bert/`
    (e.g. `cls/` heads when fine-tuning) are ignored. Model variables whose name starts with a
    prefix in `allow_missing` may be absent (they keep their initial values). Any other
    missing, unexpected or mis-shaped variable raises one AlbertError that lists them and says
    the likely cause. Nothing is assigned unless the whole read succeeded.
    """
    path = resolve_checkpoint_path(ckpt_path)
    stored = checkpoint_variable_names(path)
    variables = model.named_variables()
    missing, missing_allowed, misshaped = [], [], []
    for name, variable in variables.items():
        if name not in stored:
            (missing_allowed if name.startswith(tuple(allow_missing)) else missing).append(name)
        elif list(variable.shape) != stored[name]:
            misshaped.append(f"{name}: checkpoint {stored[name]} vs model {list(variable.shape)}")
    unexpected = [
        n
        for n in stored
        if n.startswith("bert/") and n not in variables and not NON_MODEL_VARIABLE_PATTERN.search(n)
    ]
    if missing or misshaped or unexpected:
        raise AlbertError(_mismatch_message(path, model, stored, missing, unexpected, misshaped))
    loaded = [name for name in variables if name in stored]
    values = read_tensors(path, names=loaded)
    for name in loaded:
        variable = variables[name]
        variable.assign(values[name].astype(variable.dtype.as_numpy_dtype, copy=False))
    return LoadReport(path, loaded, missing_allowed)


def _mismatch_message(path, model, stored, missing, unexpected, misshaped):
    config = model.config
    causes = []
    stored_style = style_from_names(stored)
    if stored_style and stored_style != model.style:
        causes.append(
            f"the checkpoint is {stored_style}-style but the model was built {model.style}-style "
            f"(pass --style {stored_style} or use the matching config)"
        )
    for name, axis, key in (
        ("bert/pooler/dense/kernel", 0, "hidden_size"),
        ("bert/embeddings/word_embeddings", 0, "vocab_size"),
        ("bert/embeddings/word_embeddings", 1, "embedding_size"),
    ):
        if name in stored and stored[name][axis] != getattr(config, key):
            causes.append(
                f"the config has {key}={getattr(config, key)} but the checkpoint "
                f"{stored[name][axis]}: this config does not belong to this checkpoint"
            )
    if not causes:
        causes.append(
            "config and checkpoint describe different architectures (layer count, "
            "groups, ln_type or weight sharing)"
        )

    def listing(label, names):
        shown = ", ".join(names[:4]) + (f", ... ({len(names) - 4} more)" if len(names) > 4 else "")
        return f"{len(names)} {label} [{shown}]"

    parts = [
        listing(label, names)
        for label, names in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped", misshaped),
        )
        if names
    ]
    return (
        f"checkpoint {path} does not match the model: likely cause: {'; '.join(causes)}. "
        + "; ".join(parts)
    )


# ----------------------------------------------------------------------------------------------
# Which heads a checkpoint holds; models built around one shared encoder.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Heads:
    """The heads stored in a checkpoint besides the encoder."""

    masked_lm: bool  # cls/predictions (a pretrained model, or an HF AlbertForMaskedLM)
    sentence_order: bool  # cls/seq_relationship
    num_labels: int | None  # root output_weights [C, H]: a fine-tuned classifier
    # Sequence and token classifiers store the same output_weights [C, H]; a token classifier
    # (run_ner.py) is told by its model_info.json (task "token_classification") or its CRF.
    token_level: bool = False
    crf: bool = False  # output_transitions: a linear-chain CRF over the tags
    tags: tuple | None = None  # a token classifier's tag names (model_info.json "labels")
    tag_scheme: str | None = None  # and their scheme (BIO, BIOES, BMES)

    @property
    def pretraining(self):
        """Both pretraining heads, as run_pretraining.py and the released models have them."""
        return self.masked_lm and self.sentence_order


def checkpoint_heads(ckpt_path):
    """The Heads of a checkpoint, from its variable names and the model_info.json beside it."""
    path = resolve_checkpoint_path(ckpt_path)
    names = checkpoint_variable_names(path)
    num_labels = names["output_weights"][0] if "output_weights" in names else None
    crf = "output_transitions" in names
    if is_hf_directory(path):
        info = hf_model_info(read_hf_directory(path)) or {}
    else:
        info = read_model_info(os.path.dirname(path)) or {}
    token_level = crf or bool(num_labels and info.get("task") == TOKEN_CLASSIFICATION)
    tags = tuple(info["labels"]) if token_level and info.get("labels") else None
    if tags is not None and len(tags) != num_labels:
        raise AlbertError(
            f"{os.path.dirname(path)}/{MODEL_INFO_FILE} lists {len(tags)} tags but {path} has "
            f"{num_labels} (output_weights): the file belongs to another model; remove it"
        )
    return Heads(
        masked_lm="cls/predictions/output_bias" in names,
        sentence_order="cls/seq_relationship/output_weights" in names,
        num_labels=num_labels,
        token_level=token_level,
        crf=crf,
        tags=tags,
        tag_scheme=info.get("tag_scheme") if tags else None,
    )


def hf_model_info(checkpoint):
    """What a model_info.json would say of an HF classifier (hf_checkpoint.HFCheckpoint): its
    task and, when config.json names them (not HF's LABEL_0, LABEL_1, ...), its labels; a
    token classifier's tags also need a scheme they fit. None for other models."""
    if not checkpoint.num_labels:
        return None
    names = hf_label_names(checkpoint)
    if "token_classification" in checkpoint.heads:
        scheme = ner_data.scheme_of(names) if names else None
        info = {"task": TOKEN_CLASSIFICATION, "use_crf": False, "units": "char"}
        return dict(info, labels=names, tag_scheme=scheme) if scheme else info
    if not names:
        return {"task": "classification"}
    return {"task": "classification", "labels": names, "label_names": names}


def hf_label_names(checkpoint):
    """An HF classifier's label names by id from config.json's id2label, or None when they are
    HF's placeholders (LABEL_0, LABEL_1, ...), which say nothing."""
    names = [checkpoint.id2label[i] for i in range(checkpoint.num_labels)]
    return None if names == [f"LABEL_{i}" for i in range(len(names))] else names


def label_names(ckpt_path):
    """The class names of a classifier checkpoint, by class id; None when it does not say.

    From an HF directory's config.json id2label (HF's placeholders LABEL_0, LABEL_1, ... say
    nothing, so they give None), or from the model_info.json that run_classifier.py writes
    next to its checkpoints.
    """
    path = resolve_checkpoint_path(ckpt_path)
    num_labels = checkpoint_heads(path).num_labels
    if not num_labels:
        return None
    if is_hf_directory(path):
        return hf_label_names(read_hf_directory(path))
    info = read_model_info(os.path.dirname(path) or ".") or {}
    names = info.get("label_names")
    return list(names) if names and len(names) == num_labels else None


@dataclasses.dataclass
class Models:
    """An encoder and the loaded heads of one checkpoint; every head shares `encoder`.

    `pretraining` is built when the checkpoint has either pretraining head; `heads` says
    which ones it really holds (a head it lacks keeps its initial values).
    """

    path: str
    style: str
    heads: Heads
    encoder: modeling.AlbertModel
    pretraining: modeling.AlbertForPretraining | None = None
    classifier: modeling.AlbertForClassification | None = None
    token_classifier: modeling.AlbertForTokenClassification | None = None

    def named_variables(self):
        """Every loaded variable once, by original name (the absent heads left out)."""
        named = dict(self.encoder.named_variables())
        for model in (self.pretraining, self.classifier, self.token_classifier):
            if model is not None:
                named.update(model.named_variables())
        absent = [p for p, there in _pretraining_prefixes(self.heads) if not there]
        return {n: v for n, v in named.items() if not n.startswith(tuple(absent))}


def _pretraining_prefixes(heads):
    return (("cls/predictions/", heads.masked_lm), ("cls/seq_relationship/", heads.sentence_order))


def build_models(config, ckpt_path, style=None):
    """Build the encoder plus every head the checkpoint holds and load them (nothing missing).

    The heads are built around one encoder, so its variables exist once whichever heads are
    used (e.g. by a SavedModel with several signatures).
    """
    path = resolve_checkpoint_path(ckpt_path)
    style = resolve_style(config, path, style)
    heads = checkpoint_heads(path)
    encoder = modeling.AlbertModel(config, style=style)
    models = Models(path, style, heads, encoder)
    absent = tuple(prefix for prefix, there in _pretraining_prefixes(heads) if not there)
    if heads.masked_lm or heads.sentence_order:
        models.pretraining = modeling.AlbertForPretraining(config, style=style, encoder=encoder)
        load_checkpoint(models.pretraining, path, allow_missing=absent)
    if heads.num_labels and heads.token_level:
        models.token_classifier = build_token_classifier(config, heads, style, encoder)
        load_checkpoint(models.token_classifier, path, allow_missing=())
    elif heads.num_labels:
        models.classifier = modeling.AlbertForClassification(
            config, heads.num_labels, style=style, classifier_dropout=0.0, encoder=encoder
        )
        load_checkpoint(models.classifier, path, allow_missing=())
    if all(m is None for m in (models.pretraining, models.classifier, models.token_classifier)):
        load_checkpoint(encoder, path, allow_missing=())
    logging.info("loaded %s (%s style)", path, style)
    return models


def build_token_classifier(config, heads, style, encoder=None):
    """An (unloaded) AlbertForTokenClassification for a checkpoint's Heads; a CRF decodes with
    its tag scheme's constraints when the tags are known (from model_info.json)."""
    allowed = None
    if heads.crf and heads.tags:
        allowed = modeling.crf_allowed_transitions(heads.tags, heads.tag_scheme or "BIO")
    elif heads.crf:
        logging.warning(
            "CRF checkpoint without a model_info.json naming its tags: decoding without the "
            "tag scheme's constraints"
        )
    return modeling.AlbertForTokenClassification(
        config,
        heads.num_labels,
        style=style,
        classifier_dropout=0.0,
        use_crf=heads.crf,
        allowed_transitions=allowed,
        encoder=encoder,
    )


# ----------------------------------------------------------------------------------------------
# Training runs: model.ckpt-<step> files, the state file, pruning and resumption.
# ----------------------------------------------------------------------------------------------


def data_files(prefix):
    """The `.data-NNNNN-of-NNNNN` files of a checkpoint (not TensorFlow's `.tempstate` ones)."""
    return [
        path
        for path in tf.io.gfile.glob(prefix + ".data-*")
        if _DATA_SUFFIX.fullmatch(path[len(prefix) :])
    ]


def step_prefix(output_dir, step):
    return os.path.join(output_dir, f"model.ckpt-{step}")


def step_checkpoints(output_dir):
    """(step, prefix) of every `model.ckpt-<step>.index` in output_dir, newest first."""
    if not output_dir or not tf.io.gfile.isdir(output_dir):
        return []
    found = []
    for name in tf.io.gfile.listdir(output_dir):
        match = _STEP_CHECKPOINT.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(output_dir, name[: -len(".index")])))
    return sorted(found, reverse=True)


def has_run_files(output_dir):
    """Whether output_dir holds files of a training run (checkpoints, even damaged ones)."""
    if not output_dir or not tf.io.gfile.isdir(output_dir):
        return False
    return any(
        name == STATE_FILE or name.startswith("model.ckpt-")
        for name in tf.io.gfile.listdir(output_dir)
    )


def inference_checkpoint(output_dir, init_checkpoint, trainer_ran):
    """The checkpoint a fine-tuning script evaluates and predicts with, or None for the weights
    in memory.

    After training: output_dir's model.ckpt-best when one was kept, else None (the final
    weights). Without training: output_dir's best, else its latest checkpoint, else
    init_checkpoint (which must then be a fine-tuned model; the caller checks its head).
    """
    best = os.path.join(output_dir, BEST_CHECKPOINT)
    if trainer_ran and not os.path.exists(best + ".index"):
        return None
    if os.path.exists(best + ".index") or latest_checkpoint(output_dir):
        candidate = output_dir
    elif init_checkpoint:
        candidate = init_checkpoint
    else:
        raise AlbertError(
            f"nothing to evaluate: {output_dir} has no checkpoint and no "
            "--init_checkpoint was given; add --do_train"
        )
    return resolve_checkpoint_path(candidate)


def latest_checkpoint(output_dir):
    """Prefix of the newest step checkpoint whose files are all present (None if none).

    Cheap: it looks at file names only. Resumption uses `readable_step_checkpoints`, which
    also reads each candidate.
    """
    for _, prefix in step_checkpoints(output_dir):
        if data_files(prefix):
            return prefix
    return None


def readable_step_checkpoints(output_dir, expected, skipped=None):
    """Yield (prefix, values) of output_dir's step checkpoints, newest first, each read whole.

    A checkpoint that cannot be read completely (no `.index`, truncated or missing `.data`,
    wrong variables) is skipped with a warning that names it and says why; (prefix, why) is
    also appended to the list `skipped`, if given.
    """
    if not output_dir or not tf.io.gfile.isdir(output_dir):
        return
    indexed = dict(step_checkpoints(output_dir))
    data_only = {}  # a .data file without its .index: a save cut short, or a deleted .index
    for name in tf.io.gfile.listdir(output_dir):
        match = _STEP_DATA.match(name)
        if match and int(match.group(1)) not in indexed:
            data_only[int(match.group(1))] = step_prefix(output_dir, int(match.group(1)))
    for step in sorted({**indexed, **data_only}, reverse=True):
        prefix = indexed.get(step) or data_only[step]
        try:
            if step not in indexed:
                raise AlbertError("its .index file is missing (a save cut short, or deleted)")
            values = read_tensors(prefix, expected=expected)
        except AlbertError as e:
            logging.warning("skipping damaged checkpoint %s: %s", prefix, e)
            if skipped is not None:
                skipped.append((prefix, str(e)))
            continue
        yield prefix, values


def write_checkpoint_state(output_dir, latest_prefix, all_prefixes):
    """Atomically point the `checkpoint` state file at `latest_prefix` (write temp, rename)."""
    lines = [f'model_checkpoint_path: "{os.path.basename(latest_prefix)}"']
    lines += [f'all_model_checkpoint_paths: "{os.path.basename(p)}"' for p in all_prefixes]
    final = os.path.join(output_dir, STATE_FILE)
    temp = f"{final}.tmp{os.getpid()}"
    with open(temp, "w") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, final)  # atomic: readers see the old or the new file, never half of one


def point_state_file_at(output_dir, prefix):
    """Make the `checkpoint` state file name `prefix` (the one a run resumed from) if it names
    another one or is unreadable, e.g. emptied, so that tools reading it agree."""
    path = os.path.join(output_dir, STATE_FILE)
    expected = f'model_checkpoint_path: "{os.path.basename(prefix)}"'
    try:
        with open(path) as f:
            if f.readline().strip() == expected:
                return
    except OSError:
        pass
    step = int(prefix.rsplit("-", 1)[1])
    older = [p for s, p in sorted(step_checkpoints(output_dir)) if s <= step and data_files(p)]
    logging.warning("rewriting %s to name %s", path, os.path.basename(prefix))
    write_checkpoint_state(output_dir, prefix, older)


def save_step_checkpoint(output_dir, step, named_tensors, keep_checkpoint_max):
    """Write model.ckpt-<step>, then the state file, then delete checkpoints beyond the limit.

    A kill at any point leaves every earlier checkpoint intact and the state file naming only
    complete ones.
    """
    prefix = step_prefix(output_dir, step)
    save_tensors(named_tensors, prefix)
    kept = [p for s, p in sorted(step_checkpoints(output_dir)) if p != prefix and s < step]
    kept.append(prefix)
    doomed = []
    if keep_checkpoint_max and len(kept) > keep_checkpoint_max:
        doomed, kept = kept[:-keep_checkpoint_max], kept[-keep_checkpoint_max:]
    write_checkpoint_state(output_dir, prefix, kept)
    for old in doomed:  # deleted only after the state file no longer lists them
        for path in tf.io.gfile.glob(old + ".*"):
            tf.io.gfile.remove(path)
    return prefix


class BestCheckpointKeeper:
    """Keeps `model.ckpt-best` = the weights with the best value of `metric` so far.

    The record (best_checkpoint.json) survives restarts, so a resumed run keeps comparing
    against the best of the earlier part; it also holds the last step evaluated, so that a
    run killed between a checkpoint and its evaluation can evaluate it when it resumes.
    Higher is better. A new best is written beside the old one (`model.ckpt-best.next`) and
    then renamed over it, data file first; a run killed half-way finishes or drops the
    renames when the keeper is next created, so `model.ckpt-best` is always whole.
    """

    def __init__(self, output_dir, metric="accuracy"):
        self.metric = metric
        self.prefix = os.path.join(output_dir, BEST_CHECKPOINT)
        self.next_prefix = self.prefix + ".next"
        self.record_path = os.path.join(output_dir, "best_checkpoint.json")
        self.best = None
        self.last_evaluated_step = None
        self._finish_interrupted_update()
        if os.path.isfile(self.record_path) and os.path.exists(self.prefix + ".index"):
            with open(self.record_path, encoding="utf-8") as f:
                record = json.load(f)
            self.last_evaluated_step = record.pop("last_evaluated_step", None)
            self.best = record if self.metric in record else None

    def _finish_interrupted_update(self):
        if not os.path.exists(self.next_prefix + ".index"):
            # Killed while writing the new best (or never): the old one is whole.
            for path in tf.io.gfile.glob(self.next_prefix + ".*"):
                tf.io.gfile.remove(path)
            return
        logging.warning("finishing the update of %s that a killed run left half-done", self.prefix)
        self._rename_next_into_place()

    def _rename_next_into_place(self):
        for path in data_files(self.next_prefix):
            os.replace(path, self.prefix + path[len(self.next_prefix) :])
        os.replace(self.next_prefix + ".index", self.prefix + ".index")

    def update(self, model, global_step, metrics):
        """Save the model as the best if `metrics` beats the record; True if it did."""
        value = metrics[self.metric]
        improved = self.best is None or value > self.best[self.metric]
        if improved:
            save_model(model, self.next_prefix, global_step)
            self._rename_next_into_place()
            self.best = {self.metric: value, "global_step": int(global_step)}
        self.last_evaluated_step = int(global_step)
        temp = f"{self.record_path}.tmp{os.getpid()}"
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(dict(self.best or {}, last_evaluated_step=self.last_evaluated_step), f)
        os.replace(temp, self.record_path)
        if improved:
            logging.info(
                "new best dev %s %.4f at step %d: saved %s",
                self.metric,
                value,
                global_step,
                self.prefix,
            )
        return improved


# ----------------------------------------------------------------------------------------------
# Self-contained model directories.
# ----------------------------------------------------------------------------------------------


def write_model_info(output_dir, config, vocab_file, info):
    """Config copy, vocab copy and model_info.json, so output_dir alone serves the model."""
    tf.io.gfile.makedirs(output_dir)
    with open(os.path.join(output_dir, CONFIG_COPY), "w", encoding="utf-8") as f:
        f.write(config.to_json_string())
    if vocab_file:
        vocab_copy = os.path.join(output_dir, VOCAB_COPY)
        if os.path.abspath(vocab_file) != os.path.abspath(vocab_copy):
            tf.io.gfile.copy(vocab_file, vocab_copy, overwrite=True)
    info = dict(info, config_file=CONFIG_COPY, vocab_file=VOCAB_COPY if vocab_file else None)
    with open(os.path.join(output_dir, MODEL_INFO_FILE), "w", encoding="utf-8") as f:
        json.dump(info, f, ensure_ascii=False, indent=2)


def read_model_info(model_dir):
    """model_info.json of a model directory (with absolute file paths), or None."""
    for name in (MODEL_INFO_FILE, LEGACY_MODEL_INFO_FILE):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
            for key in ("config_file", "vocab_file"):
                default = CONFIG_COPY if key == "config_file" else VOCAB_COPY
                info[key] = os.path.join(model_dir, info.get(key) or default)
            return info
    return None


# ----------------------------------------------------------------------------------------------
# One writer per output directory.
# ----------------------------------------------------------------------------------------------


class OutputDirLock:
    """An exclusive lock file in output_dir: pid, host and start time of the writing process.

    A second process gets a one-line AlbertError naming the first. A lock left by a process
    that no longer runs on this host is taken over with a warning.
    """

    def __init__(self, output_dir):
        self.path = os.path.join(output_dir, LOCK_FILE)
        self.held = False

    def acquire(self):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and self._alive(owner):
                    started = time.strftime(
                        "%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0))
                    )
                    raise AlbertError(
                        f"{os.path.dirname(self.path)} is in use by process {owner.get('pid')} "
                        f"on {owner.get('host')} (started {started}); wait for it, stop it, or "
                        f"use another --output_dir (if that process is gone, delete {self.path})"
                    ) from None
                logging.warning(
                    "taking over the stale lock %s of a process that no longer runs (%s)",
                    self.path,
                    owner,
                )
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            self.held = True
            return self
        raise AlbertError(f"could not take the lock {self.path}; another process raced for it")

    def _owner(self):
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None  # unreadable: half-written by a process killed while writing it

    @staticmethod
    def _alive(owner):
        """Whether the lock's owner still runs: its pid exists and was not reused since."""
        if owner.get("host") != socket.gethostname():
            return True  # another machine's process: cannot tell, so respect it
        try:
            pid = int(owner.get("pid", -1))
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, TypeError):
            return True
        if pid == os.getpid():
            return False  # our own pid: a restarted container, say, numbers processes alike
        started = _process_start_time(pid)
        return started is None or started <= owner.get("started", 0) + 1

    def release(self):
        if self.held:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
            self.held = False

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _process_start_time(pid):
    """When process `pid` started (epoch seconds, about 1 s precise; None if unknown).

    Linux only: /proc/<pid>/stat field 22 counts clock ticks from boot, /proc/stat has the
    boot time. A process that started after a lock was taken cannot be its owner.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


# ----------------------------------------------------------------------------------------------
# The model flags every script shares: config, checkpoint, style.
# ----------------------------------------------------------------------------------------------


def define_model_flags(flag_values, init_checkpoint_help):
    """--bert_config_file (alias --albert_config_file), --init_checkpoint and --style."""
    from absl import flags

    flags.DEFINE_string(
        "bert_config_file", None, "ALBERT config JSON (either style).", flag_values=flag_values
    )
    flags.DEFINE_string(
        "albert_config_file",
        None,
        "Alias of --bert_config_file (Google's name).",
        flag_values=flag_values,
    )
    flags.DEFINE_string("init_checkpoint", None, init_checkpoint_help, flag_values=flag_values)
    flags.DEFINE_enum(
        "style",
        None,
        list(modeling.STYLES),
        "Checkpoint naming style (default: from --init_checkpoint, else the config).",
        flag_values=flag_values,
    )


def model_config(config_file=None, init_checkpoint=None):
    """The AlbertConfig to build: `config_file` if given, else the one that comes with
    `init_checkpoint` when it is a directory: an HF directory's config.json (converted,
    refused if our model cannot compute it) or a model directory's albert_config.json."""
    if config_file:
        return modeling.AlbertConfig.from_json_file(config_file)
    hf_dir = hf_directory_of(init_checkpoint)
    if hf_dir:
        logging.info("config: %s (Hugging Face)", os.path.join(hf_dir, HF_CONFIG))
        return hf_checkpoint.read_hf_config(hf_dir)
    if init_checkpoint and os.path.isfile(os.path.join(init_checkpoint, CONFIG_COPY)):
        path = os.path.join(init_checkpoint, CONFIG_COPY)
        logging.info("config: %s (from --init_checkpoint's directory)", path)
        return modeling.AlbertConfig.from_json_file(path)
    if init_checkpoint:
        resolve_checkpoint_path(init_checkpoint)  # a path that does not exist says so first
    raise AlbertError(
        "--bert_config_file (or --albert_config_file) is required unless --init_checkpoint is "
        "a directory with its config (albert_config.json, or a Hugging Face config.json)"
    )


def config_from_flags(flag_values):
    """The AlbertConfig of --bert_config_file / --albert_config_file (one of them, or both
    equal), else of --init_checkpoint's directory (see `model_config`)."""
    given = {
        flag_values[name].value
        for name in ("bert_config_file", "albert_config_file")
        if name in flag_values
    } - {None, ""}
    if len(given) > 1:
        raise AlbertError("--bert_config_file and --albert_config_file differ; give only one")
    init = flag_values["init_checkpoint"].value if "init_checkpoint" in flag_values else None
    return model_config(given.pop() if given else None, init)


TokenizerFiles = collections.namedtuple("TokenizerFiles", ["vocab_file", "do_lower_case"])


def tokenizer_files(init_checkpoint):
    """The vocab.txt and do_lower_case that come with a checkpoint directory (None: unknown).

    An HF directory's WordPiece vocab.txt and tokenizer_config.json (a SentencePiece-only
    directory is refused: this toolkit tokenizes with WordPiece); a model directory's vocab
    copy and model_info.json. A checkpoint prefix says nothing: pass --vocab_file.
    """
    hf_dir = hf_directory_of(init_checkpoint)
    if hf_dir:
        return TokenizerFiles(
            hf_checkpoint.find_vocab_file(hf_dir), hf_checkpoint.read_do_lower_case(hf_dir)
        )
    if init_checkpoint and os.path.isdir(init_checkpoint):
        info = read_model_info(init_checkpoint) or {}
        vocab_file = info.get("vocab_file") or os.path.join(init_checkpoint, VOCAB_COPY)
        return TokenizerFiles(
            vocab_file if os.path.isfile(vocab_file) else None, info.get("do_lower_case")
        )
    return TokenizerFiles(None, None)


def remove_unfinished_files(output_dir):
    """Delete what killed runs leave half-written: TensorFlow's `*.tempstate*` files and
    state-file temporaries (call only as output_dir's single writer)."""
    if not output_dir or not tf.io.gfile.isdir(output_dir):
        return
    doomed = [
        os.path.join(output_dir, name)
        for name in tf.io.gfile.listdir(output_dir)
        if (name.startswith("model.ckpt-") and ".tempstate" in name)
        or name.startswith((STATE_FILE + ".tmp", "best_checkpoint.json.tmp"))
    ]
    for path in doomed:
        logging.warning("removing %s, left half-written by a run that was killed", path)
        tf.io.gfile.remove(path)


def clear_run_files(output_dir):
    """Delete a run's checkpoints, state file and best checkpoint (--overwrite_output_dir)."""
    doomed = [
        os.path.join(output_dir, name)
        for name in tf.io.gfile.listdir(output_dir)
        if name == STATE_FILE
        or name.startswith(("model.ckpt-", "best_checkpoint.json", STATE_FILE + ".tmp"))
    ]
    logging.warning("--overwrite_output_dir: deleting %d files of the earlier run", len(doomed))
    for path in doomed:
        tf.io.gfile.remove(path)
