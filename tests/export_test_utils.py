"""Shared pieces of the export / HF-parity tests: random checkpoints and a NumPy reference.

Weights are randomised far from their initial values (LayerNorm gammas != 1, biases != 0),
so a transposed kernel, a swapped LayerNorm or a missing bias changes the outputs.
"""

import math
import os
import subprocess
import sys
import tempfile

import numpy as np

import checkpoints
import modeling
from tests import conftest
from tests.conftest import REPO_ROOT

VOCAB_SIZE = 21128  # the real albert_zh vocab, so the converter can ship vocab.txt with it


def small_config(style, **overrides):
    """conftest's small config with the real vocab size (the converter ships vocab.txt)."""
    return conftest.small_config(style, **{"vocab_size": VOCAB_SIZE, **overrides})


def randomize(variables, seed):
    """Assign random values to every variable: LayerNorm gammas near 1, everything else N(0,s)."""
    rng = np.random.default_rng(seed)
    for name, variable in sorted(variables.items()):
        shape = variable.shape.as_list()
        if name.endswith("/gamma"):
            value = 1.0 + 0.3 * rng.standard_normal(shape)
        elif name.endswith("_embeddings"):
            value = 0.5 * rng.standard_normal(shape)
        else:  # kernels, biases, betas: fan-in scaled so activations stay O(1)
            fan_in = shape[0] if len(shape) == 2 else 16
            value = rng.standard_normal(shape) / math.sqrt(fan_in) * 1.2
        variable.assign(value.astype(np.float32))


def build_random_models(config, style, pretraining=True, num_labels=None, seed=0):
    """(encoder, pretraining model or None, classifier or None), sharing one random encoder."""
    pre = modeling.AlbertForPretraining(config, style=style) if pretraining else None
    encoder = pre.encoder if pre is not None else modeling.AlbertModel(config, style=style)
    clf = None
    if num_labels:
        clf = modeling.AlbertForClassification(
            config, num_labels, style=style, classifier_dropout=0.0
        )
        clf.encoder = encoder
    variables = {}
    for model in (encoder, pre, clf):
        if model is not None:
            variables.update(model.named_variables())
    randomize(variables, seed)
    return encoder, pre, clf


def write_checkpoint(
    directory, config, style, pretraining=True, num_labels=None, seed=0, with_optimizer_slots=False
):
    """Random model saved in its original naming. Returns (ckpt prefix, config path, models).

    `with_optimizer_slots` adds what training checkpoints also hold (adam_m/adam_v slots and
    global_step, as in albert_tiny_zh_google), which every consumer must ignore.
    """
    encoder, pre, clf = build_random_models(config, style, pretraining, num_labels, seed)
    variables = {}
    for model in (encoder, pre, clf):
        if model is not None:
            variables.update(model.named_variables())
    if with_optimizer_slots:
        variables = {name: variable.numpy() for name, variable in variables.items()}
        for name in list(variables):
            variables[name + "/adam_m"] = np.ones_like(variables[name])
            variables[name + "/adam_v"] = np.ones_like(variables[name])
        variables["global_step"] = np.array(1000, np.int64)
    prefix = checkpoints.save_tensors(variables, str(directory / "albert_model.ckpt"))
    config_path = directory / "albert_config.json"
    config_path.write_text(config.to_json_string(), encoding="utf-8")
    return prefix, str(config_path), (encoder, pre, clf)


def checkpoint_case(tmp_path_factory, name, case, seed, with_optimizer_slots=False):
    """A test case (style, config overrides, has cls/ heads, classifier labels) written as a
    checkpoint in its own directory: dict(directory, config, style, ckpt, config_path, models)."""
    style, overrides, pretraining, num_labels = case
    directory = tmp_path_factory.mktemp(name)
    config = small_config(style, **overrides)
    ckpt, config_path, models = write_checkpoint(
        directory,
        config,
        style,
        pretraining,
        num_labels,
        seed=seed,
        with_optimizer_slots=with_optimizer_slots,
    )
    return dict(
        directory=directory,
        config=config,
        style=style,
        ckpt=ckpt,
        config_path=config_path,
        models=models,
    )


def random_inputs(batch, seq, vocab_size=VOCAB_SIZE, seed=0):
    """int32 ids, a padded input mask (row lengths differ) and two segments per row."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab_size, size=(batch, seq)).astype(np.int32)
    lengths = np.linspace(seq, max(3, seq // 2), batch).astype(int)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
    segments = ((np.arange(seq)[None, :] >= (lengths[:, None] // 2)) & (mask == 1)).astype(np.int32)
    ids = ids * mask  # [PAD] = 0 on padding, as real inputs
    return ids, mask, segments


# ----------------------------------------------------------------------------- NumPy reference


def _np_gelu(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _np_layer_norm(x, gamma, beta, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _np_softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def numpy_brightmart_forward(w, config, ids, mask, segments):
    """Independent float64 forward of a brightmart model (post-LN or pre-LN) from its weights.

    `w` maps original checkpoint names to arrays. Returns (sequence_output, pooled_output).
    """
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    seq = ids.shape[1]
    x = w["bert/embeddings/word_embeddings"][ids] @ w["bert/embeddings/word_embeddings_2"]
    x = x + w["bert/embeddings/token_type_embeddings"][segments]
    x = x + w["bert/embeddings/position_embeddings"][:seq][None]
    x = _np_layer_norm(x, w["bert/embeddings/LayerNorm/gamma"], w["bert/embeddings/LayerNorm/beta"])
    heads = config.num_attention_heads
    size = config.hidden_size // heads
    adder = (1.0 - mask[:, None, None, :].astype(np.float64)) * -10000.0
    p = "bert/encoder/layer_shared/"

    def lin(h, name):
        return h @ w[p + name + "/kernel"] + w[p + name + "/bias"]

    def attention(h):
        b = h.shape[0]

        def split(t):
            return t.reshape(b, seq, heads, size).transpose(0, 2, 1, 3)

        q, k, v = (split(lin(h, f"attention/self/{r}")) for r in ("query", "key", "value"))
        probs = _np_softmax(q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + adder)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(b, seq, heads * size)
        return lin(context, "attention/output/dense")

    def ffn(h):
        return lin(_np_gelu(lin(h, "intermediate/dense")), "output/dense")

    def ln(h, name):
        return _np_layer_norm(h, w[p + name + "/gamma"], w[p + name + "/beta"])

    for _ in range(config.num_hidden_layers):
        if config.ln_type == "preln":
            x = x + attention(ln(x, "attention/output/LayerNorm"))
            x = x + ffn(ln(x, "output/LayerNorm"))
        else:
            x = ln(x + attention(x), "attention/output/LayerNorm")
            x = ln(x + ffn(x), "output/LayerNorm")
    pooled = np.tanh(x[:, 0] @ w["bert/pooler/dense/kernel"] + w["bert/pooler/dense/bias"])
    return x, pooled


def numpy_brightmart_classifier_probs(w, config, ids, mask, segments):
    """Softmax of the brightmart classifier (with loss/LayerNorm when pre-LN)."""
    _, pooled = numpy_brightmart_forward(w, config, ids, mask, segments)
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    if "loss/LayerNorm/gamma" in w:
        pooled = _np_layer_norm(pooled, w["loss/LayerNorm/gamma"], w["loss/LayerNorm/beta"])
    return _np_softmax(pooled @ w["output_weights"].T + w["output_bias"])


def expected_variable_shapes(config, style, pretraining=True, num_labels=None):
    """Names and shapes of docs/formats.md (brightmart-style / google-style) for a config (the original code's variables)."""
    V, E, H, F = (
        config.vocab_size,
        config.embedding_size,
        config.hidden_size,
        config.intermediate_size,
    )
    T, P = config.type_vocab_size, config.max_position_embeddings
    width = E if style == "google" else H
    shapes = {
        "bert/embeddings/word_embeddings": [V, E],
        "bert/embeddings/token_type_embeddings": [T, width],
        "bert/embeddings/position_embeddings": [P, width],
        "bert/embeddings/LayerNorm/beta": [width],
        "bert/embeddings/LayerNorm/gamma": [width],
        "bert/pooler/dense/kernel": [H, H],
        "bert/pooler/dense/bias": [H],
    }
    if style == "brightmart":
        shapes["bert/embeddings/word_embeddings_2"] = [E, H]
        scopes = (
            ["bert/encoder/layer_shared/"]
            if config.share_parameter_across_layers
            else [f"bert/encoder/layer_{i}/" for i in range(config.num_hidden_layers)]
        )
        denses = {
            "attention/self/query": [H, H],
            "attention/self/key": [H, H],
            "attention/self/value": [H, H],
            "attention/output/dense": [H, H],
            "intermediate/dense": [H, F],
            "output/dense": [F, H],
        }
        norms = ["attention/output/LayerNorm", "output/LayerNorm"]
    else:
        if E != H:
            shapes["bert/encoder/embedding_hidden_mapping_in/kernel"] = [E, H]
            shapes["bert/encoder/embedding_hidden_mapping_in/bias"] = [H]
        scopes = [
            f"bert/encoder/transformer/group_{g}/inner_group_{k}/"
            for g in range(config.num_hidden_groups)
            for k in range(config.inner_group_num)
        ]
        denses = {
            "attention_1/self/query": [H, H],
            "attention_1/self/key": [H, H],
            "attention_1/self/value": [H, H],
            "attention_1/output/dense": [H, H],
            "ffn_1/intermediate/dense": [H, F],
            "ffn_1/intermediate/output/dense": [F, H],
        }
        norms = ["LayerNorm", "LayerNorm_1"]
    for scope in scopes:
        for dense_name, kernel_shape in denses.items():
            shapes[scope + dense_name + "/kernel"] = kernel_shape
            shapes[scope + dense_name + "/bias"] = [kernel_shape[1]]
        for norm in norms:
            shapes[scope + norm + "/gamma"] = [H]
            shapes[scope + norm + "/beta"] = [H]
    if pretraining:
        transform = E if style == "google" else H
        shapes.update(
            {
                "cls/predictions/transform/dense/kernel": [H, transform],
                "cls/predictions/transform/dense/bias": [transform],
                "cls/predictions/transform/LayerNorm/gamma": [transform],
                "cls/predictions/transform/LayerNorm/beta": [transform],
                "cls/predictions/output_bias": [V],
                "cls/seq_relationship/output_weights": [2, H],
                "cls/seq_relationship/output_bias": [2],
            }
        )
    if num_labels:
        shapes["output_weights"] = [num_labels, H]
        shapes["output_bias"] = [num_labels]
        if style == "brightmart" and config.ln_type == "preln":
            shapes["loss/LayerNorm/gamma"] = [H]
            shapes["loss/LayerNorm/beta"] = [H]
    return shapes


def numpy_brightmart_pretraining(w, config, ids, mask, segments, positions):
    """(masked_lm_log_probs [B,P,V], sentence_order_logits [B,2]) of a brightmart model."""
    sequence, pooled = numpy_brightmart_forward(w, config, ids, mask, segments)
    w = {k: np.asarray(v, np.float64) for k, v in w.items()}
    gathered = np.take_along_axis(sequence, positions[:, :, None], axis=1)
    hidden = _np_gelu(
        gathered @ w["cls/predictions/transform/dense/kernel"]
        + w["cls/predictions/transform/dense/bias"]
    )
    hidden = _np_layer_norm(
        hidden,
        w["cls/predictions/transform/LayerNorm/gamma"],
        w["cls/predictions/transform/LayerNorm/beta"],
    )
    logits = (
        hidden @ w["bert/embeddings/word_embeddings_2"].T @ w["bert/embeddings/word_embeddings"].T
        + w["cls/predictions/output_bias"]
    )
    logits = logits - logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    sop = (
        pooled @ w["cls/seq_relationship/output_weights"].T + w["cls/seq_relationship/output_bias"]
    )
    return log_probs, sop


def run_clis(argv_lists):
    """Run several CLI invocations concurrently (each pays the TF import); return
    (exit code, stdout, stderr) of each. Output goes to files, not pipes: a child that writes
    more than a pipe holds would block while we wait for it."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    runs = []
    for argv in argv_lists:
        out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        process = subprocess.Popen(
            [sys.executable, *argv], cwd=REPO_ROOT, env=env, text=True, stdout=out, stderr=err
        )
        runs.append((process, out, err))
    results = []
    for process, out, err in runs:
        code = process.wait(timeout=900)
        out.seek(0)
        err.seek(0)
        results.append((code, out.read(), err.read()))
        out.close()
        err.close()
    return results


def assert_one_line_error(result, *fragments):
    """A user mistake: exit status 2 and exactly one `error:` line (no traceback) holding
    every fragment."""
    code, _, stderr = result
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
