"""export_savedmodel.py's raw-text signatures: encode_text and classify_text.

The reference is the same SavedModel's id signatures fed with tokenization.FullTokenizer's
ids (encode_pair, padded to the batch's longest pair as the in-graph tokenizer pads): the
text signatures must give the same numbers (1e-6) on real LCQMC pairs, for a fine-tuned-like
checkpoint of each style, with and without a model_info.json. Also: the SavedModel directory
alone is enough (its sources are deleted before loading), bad input never errors, and
`saved_model_cli run` and `similarity.py --saved_model` work on raw text in subprocesses.
"""

import os
import re
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf

import checkpoints
import errors
import export_savedmodel
import inference
import tokenization
from tests import export_test_utils as u
from tests.conftest import shared_data

MAX_SEQ_LENGTH = 32  # the small test configs have 40 positions
LABEL_NAMES = ["different", "same"]


def _lcqmc_pairs(count, start=0):
    with open(shared_data("lcqmc_small/test.txt"), encoding="utf-8") as f:
        lines = f.read().splitlines()[start : start + count]
    return [tuple(line.split("\t")[:2]) for line in lines]


def _id_inputs(full_tokenizer, pairs, max_seq_length):
    """FullTokenizer.encode_pair of each pair, padded with 0 to the longest: int32 arrays."""
    encoded = [full_tokenizer.encode_pair(a, b or None, max_seq_length) for a, b in pairs]
    width = max(len(e["input_ids"]) for e in encoded)
    return {
        name: np.array([e[name] + [0] * (width - len(e[name])) for e in encoded], np.int32)
        for name in inference.INPUT_NAMES
    }


def _texts(pairs):
    """classify_text / encode_text keyword arguments for (text_a, text_b) pairs."""
    return {
        "text_a": tf.constant([a for a, _ in pairs], tf.string),
        "text_b": tf.constant([b for _, b in pairs], tf.string),
    }


@pytest.fixture(scope="module")
def full_tokenizer():
    return tokenization.FullTokenizer(str(shared_data("vocab.txt")))


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """A google-style 2-class classifier as run_classifier.py leaves it (weights, config,
    vocab.txt, model_info.json), exported from its directory in Python; then the directory is
    deleted, so the loaded SavedModel can only use what is inside it."""
    directory = tmp_path_factory.mktemp("finetuned")
    config = u.small_config("google", num_hidden_groups=2)
    _, _, (_, _, classifier) = u.write_checkpoint(directory, config, "google", False, 2, 5)
    info = {
        "labels": ["0", "1"],
        "label_names": LABEL_NAMES,
        "max_seq_length": MAX_SEQ_LENGTH,
        "do_lower_case": True,
    }
    checkpoints.write_model_info(str(directory), config, str(shared_data("vocab.txt")), info)
    export_dir = tmp_path_factory.mktemp("exported") / "savedmodel"
    text = export_savedmodel.text_settings(str(directory))  # everything from the directory
    names = export_savedmodel.export_savedmodel(config, str(directory), str(export_dir), text=text)
    shutil.rmtree(directory)
    return dict(
        config=config,
        names=names,
        export_dir=export_dir,
        loaded=tf.saved_model.load(str(export_dir)),
        classifier=classifier,
    )


def test_text_signatures_beside_the_id_signatures(finetuned):
    assert finetuned["names"] == ["classifier", "classify_text", "encode_text", "serving_default"]
    assert (finetuned["export_dir"] / "assets" / "vocab.txt").read_bytes() == (
        shared_data("vocab.txt").read_bytes()
    )
    hidden = finetuned["config"].hidden_size
    expected_outputs = {
        "classify_text": {
            "probabilities": [None, 2],
            "labels": [None, 2],
            "predicted_label": [None],
        },
        "encode_text": {
            "pooled_output": [None, hidden],
            "sequence_output": [None, None, hidden],
            "input_mask": [None, None],
        },
    }
    for name, outputs in expected_outputs.items():
        signature = finetuned["loaded"].signatures[name]
        inputs = signature.structured_input_signature[1]
        assert sorted(inputs) == ["text_a", "text_b"]
        for spec in inputs.values():
            assert spec.dtype == tf.string and spec.shape.as_list() == [None]
        got = {k: v.shape.as_list() for k, v in signature.structured_outputs.items()}
        assert got == outputs


def test_classify_text_equals_the_id_signature_on_lcqmc_pairs(finetuned, full_tokenizer):
    signatures = finetuned["loaded"].signatures
    pairs = _lcqmc_pairs(96)
    for batch in (pairs[:1], pairs[1:33], pairs[33:]):
        served = signatures["classify_text"](**_texts(batch))
        ids = _id_inputs(full_tokenizer, batch, MAX_SEQ_LENGTH)
        reference = signatures["classifier"](**{k: tf.constant(v) for k, v in ids.items()})
        probabilities = served["probabilities"].numpy()
        np.testing.assert_allclose(
            probabilities, reference["probabilities"].numpy(), atol=1e-6, rtol=0
        )
        eager = tf.nn.softmax(finetuned["classifier"](*ids.values())).numpy()
        np.testing.assert_allclose(probabilities, eager, atol=1e-6, rtol=0)
        assert served["labels"].numpy().tolist() == [[b"different", b"same"]] * len(batch)
        assert served["predicted_label"].numpy().tolist() == [
            LABEL_NAMES[i].encode() for i in probabilities.argmax(axis=1)
        ]


def test_encode_text_equals_serving_default(finetuned, full_tokenizer):
    signatures = finetuned["loaded"].signatures
    pairs = _lcqmc_pairs(8, start=100) + [("单句，没有第二句", "")]
    served = signatures["encode_text"](**_texts(pairs))
    ids = _id_inputs(full_tokenizer, pairs, MAX_SEQ_LENGTH)
    reference = signatures["serving_default"](**{k: tf.constant(v) for k, v in ids.items()})
    np.testing.assert_array_equal(served["input_mask"].numpy(), ids["input_mask"])
    for key in ("pooled_output", "sequence_output"):
        np.testing.assert_allclose(served[key].numpy(), reference[key].numpy(), atol=1e-6, rtol=0)


def test_bad_input_never_fails(finetuned, full_tokenizer):
    classify = finetuned["loaded"].signatures["classify_text"]
    encode = finetuned["loaded"].signatures["encode_text"]

    empty = {"text_a": tf.constant([], tf.string), "text_b": tf.constant([], tf.string)}
    served = classify(**empty)
    assert served["probabilities"].shape == (0, 2) and served["labels"].shape == (0, 2)
    assert served["predicted_label"].shape == (0,)
    encoded = encode(**empty)
    assert encoded["sequence_output"].shape == (0, 0, finetuned["config"].hidden_size)
    assert encoded["pooled_output"].shape == (0, finetuned["config"].hidden_size)

    # Empty strings, a 10,000-character text (truncated to max_seq_length), whitespace only.
    long_text = "很长的句子，" * 1666 + "完"
    pairs = [("", ""), ("", "有第二句"), ("有第一句", ""), (long_text, "短句"), ("  \t", long_text)]
    served = classify(**_texts(pairs))
    ids = _id_inputs(full_tokenizer, pairs, MAX_SEQ_LENGTH)
    reference = finetuned["loaded"].signatures["classifier"](
        **{k: tf.constant(v) for k, v in ids.items()}
    )
    np.testing.assert_allclose(
        served["probabilities"].numpy(), reference["probabilities"].numpy(), atol=1e-6, rtol=0
    )
    assert encode(**_texts(pairs))["input_mask"].shape == (len(pairs), MAX_SEQ_LENGTH)

    # Invalid UTF-8 is documented to vanish: each bad byte sequence is dropped, as
    # tokenization.convert_to_unicode's U+FFFD is; the rest of the text counts as usual.
    valid = "我想买手机".encode()
    broken = [b"\xff" + valid, valid[:3] + b"\xfe\xe4\xb8" + valid[3:], valid + b"\xe6\x89"]
    served = classify(text_a=tf.constant(broken), text_b=tf.constant([b"\x80"] * 3))
    clean = classify(text_a=tf.constant([valid] * 3), text_b=tf.constant([" "] * 3))
    np.testing.assert_array_equal(served["probabilities"], clean["probabilities"])

    with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
        classify(text_a=tf.constant(["a", "b"]), text_b=tf.constant(["c"]))


def test_text_predictor_and_its_errors(finetuned, tmp_path):
    predictor = inference.SavedModelTextPredictor(finetuned["export_dir"])
    assert (predictor.labels, predictor.label_names) == (["0", "1"], LABEL_NAMES)
    assert predictor.max_seq_length == MAX_SEQ_LENGTH
    pairs = _lcqmc_pairs(40, start=200)
    texts_a, texts_b = [a for a, _ in pairs], [b for _, b in pairs]
    batched = inference.predict_texts(predictor, texts_a, texts_b, batch_size=16)
    for index in (0, 17, 39):  # one by one, the result must not depend on the batch
        alone = predictor([texts_a[index]], [texts_b[index]])["probabilities"][0]
        np.testing.assert_allclose(batched["probabilities"][index], alone, atol=1e-6, rtol=0)
    assert inference.predict_texts(predictor, [], [])["probabilities"].shape == (0, 2)

    with pytest.raises(errors.AlbertError, match="not a SavedModel directory"):
        inference.SavedModelTextPredictor(tmp_path)
    encoder_only = tmp_path / "encoder_only"
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": x}, input_signature=[tf.TensorSpec([None], tf.int32)])
    tf.saved_model.save(module, str(encoder_only), signatures={"serving_default": module.f})
    with pytest.raises(errors.AlbertError, match="has no classify_text signature"):
        inference.SavedModelTextPredictor(encoder_only)


def test_export_mistakes_are_clear_errors_that_write_nothing(tmp_path):
    config = u.small_config("google")
    ckpt, _, _ = u.write_checkpoint(tmp_path, config, "google", False, 3, seed=2)
    vocab = str(shared_data("vocab.txt"))
    with pytest.raises(errors.AlbertError, match="--with_tokenizer needs a vocab.*--vocab_file"):
        export_savedmodel.text_settings(ckpt, with_tokenizer=True)
    with pytest.raises(errors.AlbertError, match="--vocab_file missing/vocab.txt does not exist"):
        export_savedmodel.text_settings(ckpt, vocab_file="missing/vocab.txt")
    assert export_savedmodel.text_settings(ckpt) is None  # no vocab known: id signatures only
    assert export_savedmodel.text_settings(ckpt, vocab, with_tokenizer=False) is None

    export_dir = tmp_path / "never_written"
    too_long = export_savedmodel.TextSettings(vocab, max_seq_length=64)
    with pytest.raises(errors.AlbertError, match="max_seq_length=64 exceeds max_position_emb"):
        export_savedmodel.export_savedmodel(config, ckpt, str(export_dir), text=too_long)
    checkpoints.write_model_info(str(tmp_path), config, vocab, {"labels": ["0", "1"]})
    two_labels = export_savedmodel.text_settings(ckpt)
    assert two_labels.vocab_file == str(tmp_path / "vocab.txt")
    with pytest.raises(errors.AlbertError, match="names 2 labels but .* classifier has 3"):
        export_savedmodel.export_savedmodel(config, ckpt, str(export_dir), text=two_labels)
    assert not export_dir.exists()


def _saved_model_cli():
    """The saved_model_cli console script installed with tensorflow (a Python script)."""
    path = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.isfile(path):
        pytest.skip("saved_model_cli is not installed next to this Python")
    return path


@pytest.mark.slow
def test_cli_export_saved_model_cli_and_similarity_on_raw_text(finetuned, full_tokenizer, tmp_path):
    """The CLI on a brightmart checkpoint without model_info.json (labels "0".."2");
    saved_model_cli and similarity.py --saved_model on raw text."""
    config = u.small_config("brightmart")
    source = tmp_path / "source"
    source.mkdir()
    ckpt, config_path, _ = u.write_checkpoint(source, config, "brightmart", True, 3, seed=7)
    vocab = str(shared_data("vocab.txt"))
    export_dir = tmp_path / "brightmart_savedmodel"
    base = ["export_savedmodel.py", "--bert_config_file", config_path, "--init_checkpoint", ckpt]
    pair = _lcqmc_pairs(1, start=300)[0]
    pairs_file = tmp_path / "pairs.tsv"
    pairs_file.write_text(
        "".join(f"{a}\t{b}\t1\n" for a, b in _lcqmc_pairs(5, start=400)), encoding="utf-8"
    )
    finetuned_dir = str(finetuned["export_dir"])
    results = u.run_clis(
        [
            base + ["--export_dir", str(export_dir), "--vocab_file", vocab, "--max_seq_length=24"],
            [
                _saved_model_cli(),
                "run",
                "--dir",
                finetuned_dir,
                "--tag_set",
                "serve",
                "--signature_def",
                "classify_text",
                "--input_exprs",
                f'text_a=["{pair[0]}"];text_b=["{pair[1]}"]',
            ],
            ["similarity.py", "--saved_model", finetuned_dir, "--input_file", str(pairs_file)],
            ["similarity.py", "--saved_model", finetuned_dir, "--vocab_file", vocab, "a", "b"],
        ]
    )
    code, stdout, stderr = results[0]
    assert code == 0, stderr
    assert '"signatures": ["classifier", "classify_text", "encode_text", "pretraining", ' in stdout
    u.assert_one_line_error(results[3], "--saved_model brings its own tokenizer", "--vocab_file")

    shutil.rmtree(source)
    loaded = tf.saved_model.load(str(export_dir))
    pairs = _lcqmc_pairs(20, start=500)
    served = loaded.signatures["classify_text"](**_texts(pairs))
    ids = _id_inputs(full_tokenizer, pairs, 24)
    reference = loaded.signatures["classifier"](**{k: tf.constant(v) for k, v in ids.items()})
    np.testing.assert_allclose(
        served["probabilities"].numpy(), reference["probabilities"].numpy(), atol=1e-6, rtol=0
    )
    assert served["labels"].numpy()[0].tolist() == [b"0", b"1", b"2"]

    # saved_model_cli prints every output; its probabilities are the Python call's.
    code, stdout, stderr = results[1]
    assert code == 0, stderr
    printed = re.search(r"output key probabilities:\s*(\[\[.*?\]\])", stdout, re.S).group(1)
    printed = np.array(printed.strip("[]").split(), np.float32)
    expected = finetuned["loaded"].signatures["classify_text"](**_texts([pair]))
    np.testing.assert_allclose(printed, expected["probabilities"].numpy()[0], atol=1e-6)
    assert "[[b'different' b'same']]" in stdout

    code, stdout, stderr = results[2]
    assert code == 0, stderr
    rows = [line.split("\t") for line in stdout.splitlines() if "\t" in line]
    pairs = _lcqmc_pairs(5, start=400)
    assert [(a, b) for _, a, b in rows] == pairs
    expected = finetuned["loaded"].signatures["classify_text"](**_texts(pairs))
    np.testing.assert_allclose(
        [float(p) for p, _, _ in rows], expected["probabilities"].numpy()[:, 1], atol=1e-4
    )
    assert "accuracy at 0.5" in stdout
