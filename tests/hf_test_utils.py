"""Hugging Face ALBERT directories for the tests, written by transformers itself.

Random models far from their initial values (so a transposed kernel or a swapped LayerNorm
shows), saved with save_pretrained (safetensors, optionally sharded) or as the PyTorch
pickles transformers 4 wrote. torch and transformers are imported inside the functions: the
test modules skip themselves first when those are not installed.
"""

import json
import os
import pathlib
import shutil

import numpy as np

from tests import export_test_utils as u


def write_fake_vocab(path):
    """A vocab.txt of VOCAB_SIZE placeholder tokens (for tests that never tokenize text)."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"[tok{i}]\n" for i in range(u.VOCAB_SIZE))


def randomize(model, seed):
    """Weights far from their initial values (as export_test_utils.randomize for ours)."""
    import torch

    rng = np.random.default_rng(seed)
    config = model.config
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):  # tied weights once
            shape = tuple(parameter.shape)
            is_norm = "LayerNorm" in name or "layer_norm" in name
            if is_norm and name.endswith("weight"):
                value = 1.0 + 0.3 * rng.standard_normal(shape)
            elif (
                "embedding_hidden_mapping_in" in name
                and config.embedding_size == config.hidden_size
            ):
                # What our converter writes for E == H (Google's ALBERT has no projection then).
                value = np.eye(shape[0]) if name.endswith("weight") else np.zeros(shape)
            elif "embeddings" in name:
                value = 0.5 * rng.standard_normal(shape)
            else:  # kernels, biases, betas: fan-in scaled so activations stay O(1)
                fan_in = shape[1] if len(shape) == 2 else 16
                value = rng.standard_normal(shape) / np.sqrt(fan_in) * 1.2
            parameter.copy_(torch.from_numpy(value.astype(np.float32)))


def save(model, directory, how="safetensors"):
    """save_pretrained, then turn the safetensors into `.bin` files when asked: transformers 5
    writes only safetensors (safe_serialization=False is ignored), 4 wrote torch pickles.

    how: "safetensors", "safetensors_shards", "bin" or "bin_shards".
    """
    import torch
    from safetensors.torch import load_file

    directory = pathlib.Path(directory)
    shard_size = "300KB" if how.endswith("shards") else "5GB"
    model.save_pretrained(directory, max_shard_size=shard_size)
    if not how.startswith("bin"):
        return
    if how == "bin":
        os.remove(directory / "model.safetensors")
        state = model.state_dict()  # with the tied decoder copies, as transformers 4 saved
        positions = torch.arange(model.config.max_position_embeddings)[None]
        state["albert.embeddings.position_ids"] = positions  # a buffer old versions saved
        torch.save(state, directory / "pytorch_model.bin")
        return
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    weight_map = {}
    for shard in sorted(set(index["weight_map"].values())):
        bin_name = shard.replace("model-", "pytorch_model-").replace(".safetensors", ".bin")
        tensors = load_file(directory / shard)
        torch.save(tensors, directory / bin_name)
        weight_map.update(dict.fromkeys(tensors, bin_name))
        os.remove(directory / shard)
    os.remove(directory / "model.safetensors.index.json")
    (directory / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )


def make_hf_directory(directory, class_name, config_values, vocab_file, seed=0, how="safetensors"):
    """A random `transformers.<class_name>` of `config_values`, saved to `directory` with a
    copy of `vocab_file`; returns the (eval-mode) torch model."""
    import torch
    import transformers

    values = dict(
        hidden_act="gelu_new",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout_prob=0.0,
    )
    values.update(config_values)
    torch.manual_seed(seed)
    model = getattr(transformers, class_name)(transformers.AlbertConfig(**values)).eval()
    randomize(model, seed=seed + 10)
    save(model, directory, how)
    shutil.copyfile(vocab_file, pathlib.Path(directory) / "vocab.txt")
    return model


def torch_inputs(ids, mask, segments):
    import torch

    return dict(
        input_ids=torch.tensor(ids, dtype=torch.long),
        attention_mask=torch.tensor(mask, dtype=torch.long),
        token_type_ids=torch.tensor(segments, dtype=torch.long),
    )
