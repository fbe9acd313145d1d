"""Checkpoints: the one place that reads, writes, finds and trusts them.

Every script goes through this module to turn a path into weights:

* Files. The originals' TF1 name-based format (`prefix.index` + `prefix.data-*`), variables
  under their original names, so released albert_zh checkpoints of both styles load by name
  and ours load in the original code. `save_tensors` writes one, `read_tensors` reads one with
  every name and shape checked first, and `load_checkpoint` fills a model from one.
* Which file. `resolve_checkpoint_path` turns a prefix, a `.index`/`.data` file name or a
  directory into a prefix; a model directory means its best checkpoint (`model.ckpt-best`,
  kept by `BestCheckpointKeeper`) if it has one, else its newest complete one.
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

import modeling
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
_CORRUPT_ERRORS = (tf.errors.OpError, ValueError, IndexError)


# ----------------------------------------------------------------------------------------------
# Reading and writing one checkpoint.
# ----------------------------------------------------------------------------------------------


def resolve_checkpoint_path(path):
    """A checkpoint prefix from a prefix, a `.index`/`.data-*` file name or a directory.

    A directory resolves to its `model.ckpt-best` if present (a run_classifier.py output),
    else to the newest checkpoint its `checkpoint` state file names, else to its only
    `*.index` file (a released model's folder).
    """
    if path is None:
        return None
    path = os.fspath(path)
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
                    "file or exactly one *.index file; pass the checkpoint prefix instead"
                )
            path = os.path.join(directory, indexes[0][: -len(".index")])
    if not os.path.exists(path + ".index"):
        raise AlbertError(
            f"checkpoint not found: {path}.index does not exist (pass the prefix, e.g. "
            "prev_trained_model/albert_tiny/albert_model.ckpt)"
        )
    return path


def checkpoint_variable_names(ckpt_path):
    """dict name -> shape (list) of every variable stored in a checkpoint."""
    path = resolve_checkpoint_path(ckpt_path)
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
    try:
        reader = tf.train.load_checkpoint(path)
        stored = reader.get_variable_to_shape_map()
    except _CORRUPT_ERRORS as e:
        raise AlbertError(f"cannot read checkpoint {path}: {first_line(e)}") from None
    if expected:
        missing = [n for n in expected if n not in stored]
        if missing:
            raise AlbertError(
                f"{path} lacks {len(missing)} variable(s), e.g. {missing[0]}: it was written by "
                "another model or optimizer"
            )
        for name, shape in expected.items():
            if list(stored[name]) != list(shape):
                raise AlbertError(
                    f"{path}: {name} has shape {list(stored[name])} but {list(shape)} is expected"
                )
    if names is None:
        names = list(expected) if expected else sorted(stored)
    values = {}
    for name in names:
        try:
            values[name] = reader.get_tensor(name)
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
    """ "brightmart" or "google" from the variable names of a checkpoint (None if unclear)."""
    return style_from_names(checkpoint_variable_names(ckpt_path))


def resolve_style(config, init_checkpoint=None, style_flag=None):
    """The style to build: explicit flag, else the checkpoint's, else the config's, else google."""
    if style_flag:
        if style_flag not in modeling.STYLES:
            raise AlbertError(
                f"--style must be one of {', '.join(modeling.STYLES)}, got {style_flag!r}"
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


def latest_checkpoint(output_dir):
    """Prefix of the newest step checkpoint whose files are all present (None if none).

    Cheap: it looks at file names only. Resumption uses `readable_step_checkpoints`, which
    also reads each candidate.
    """
    for _, prefix in step_checkpoints(output_dir):
        if tf.io.gfile.glob(prefix + ".data-*"):
            return prefix
    return None


def readable_step_checkpoints(output_dir, expected):
    """Yield (prefix, values) of output_dir's step checkpoints, newest first, each read whole.

    A checkpoint that cannot be read completely (no `.index`, truncated or missing `.data`,
    wrong variables) is skipped with a warning that names it and says why.
    """
    for _, prefix in step_checkpoints(output_dir):
        try:
            values = read_tensors(prefix, expected=expected)
        except AlbertError as e:
            logging.warning("skipping damaged checkpoint %s: %s", prefix, e)
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
    against the best of the earlier part. Higher is better.
    """

    def __init__(self, output_dir, metric="accuracy"):
        self.metric = metric
        self.prefix = os.path.join(output_dir, BEST_CHECKPOINT)
        self.record_path = os.path.join(output_dir, "best_checkpoint.json")
        self.best = None
        if os.path.isfile(self.record_path) and os.path.exists(self.prefix + ".index"):
            with open(self.record_path, encoding="utf-8") as f:
                self.best = json.load(f)

    def update(self, model, global_step, metrics):
        value = metrics[self.metric]
        if self.best is not None and value <= self.best[self.metric]:
            return False
        save_model(model, self.prefix, global_step)
        self.best = {self.metric: value, "global_step": int(global_step)}
        temp = f"{self.record_path}.tmp{os.getpid()}"
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(self.best, f)
        os.replace(temp, self.record_path)
        logging.info(
            "new best dev %s %.4f at step %d: saved %s",
            self.metric,
            value,
            global_step,
            self.prefix,
        )
        return True


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
                        "use another --output_dir"
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
        if owner.get("host") != socket.gethostname():
            return True  # another machine's process: cannot tell, so respect it
        try:
            os.kill(int(owner.get("pid", -1)), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, TypeError):
            return True
        return True

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


def config_file_from_flags(flag_values):
    """The config path of --bert_config_file / --albert_config_file (one of them, or both equal).

    Without either, a model directory given as --init_checkpoint supplies its config copy.
    """
    given = {flag_values.bert_config_file, flag_values.albert_config_file} - {None, ""}
    if len(given) > 1:
        raise AlbertError("--bert_config_file and --albert_config_file differ; give only one")
    if given:
        return given.pop()
    init = flag_values["init_checkpoint"].value if "init_checkpoint" in flag_values else None
    if init and os.path.isdir(init) and os.path.isfile(os.path.join(init, CONFIG_COPY)):
        path = os.path.join(init, CONFIG_COPY)
        logging.info("config: %s (from --init_checkpoint's directory)", path)
        return path
    raise AlbertError("--bert_config_file (or --albert_config_file) is required")


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
