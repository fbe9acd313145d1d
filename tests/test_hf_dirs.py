"""Hugging Face ALBERT directories wherever a checkpoint is accepted (checkpoints.py).

Random tiny google-style HF models (vocab 21128, the real vocab.txt; embedding 128) are
written by transformers' save_pretrained and then used as --init_checkpoint, with no config
or vocab flag:
* run_classifier.py fine-tunes an AlbertForPreTraining directory on real lcqmc_small pairs;
  the checkpoint it writes exports to a SavedModel and back to HF, and our model, the
  SavedModel and HF PyTorch give the same probabilities (1e-4);
* an AlbertForSequenceClassification directory with id2label: its label names reach
  run_classifier.py, export_savedmodel.py and similarity.py (CLIs), equal to HF PyTorch;
* run_pretraining.py continues from the AlbertForPreTraining directory: its loss at step 0
  is the loss HF PyTorch computes with the same weights on the same data;
* mistakes are one `error:` line.
"""

import json
import shutil
import types

import numpy as np
import pytest
import tensorflow as tf

import checkpoints
import convert_albert_tf_checkpoint_to_pytorch as to_hf
import export_savedmodel
import hf_checkpoint
import inference
from errors import AlbertError
from tests import export_test_utils as u
from tests import hf_test_utils as hf_utils
from tests import pretraining_fixtures as pf
from tests.conftest import shared_data
from tests.test_run_classifier import read_lines, write_config
from tests.test_run_classifier import run as run_classifier
from tests.test_run_pretraining import run_in_process as run_pretraining

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4
TINY = dict(
    vocab_size=21128,
    embedding_size=128,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=64,
)
LABELS = {0: "different", 1: "same"}  # lcqmc's label names


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """The two HF directories (and their torch models), saved once."""
    vocab = shared_data("vocab.txt")
    root = tmp_path_factory.mktemp("hf_dirs")
    pretraining = root / "albert_chinese_tiny"
    pretraining_model = hf_utils.make_hf_directory(
        pretraining, "AlbertForPreTraining", TINY, vocab, seed=1
    )
    # As a Hub directory says it: the tokenizer's settings reach our tokenizer.
    hf_checkpoint.write_tokenizer_files(vocab, pretraining, False, 64)
    classifier = root / "albert_chinese_tiny_lcqmc"
    classifier_model = hf_utils.make_hf_directory(
        classifier, "AlbertForSequenceClassification", dict(TINY, id2label=LABELS), vocab, seed=2
    )
    hf_checkpoint.write_tokenizer_files(vocab, classifier, True, 64)
    return types.SimpleNamespace(
        vocab=str(vocab),
        pretraining=str(pretraining),
        pretraining_model=pretraining_model,
        classifier=str(classifier),
        classifier_model=classifier_model,
    )


def _hf_probabilities(model, ids, mask, segments):
    with torch.inference_mode():
        logits = model(**hf_utils.torch_inputs(ids, mask, segments)).logits
    return torch.softmax(logits, -1).numpy()


def _lcqmc_slice(directory, train_rows, dev_rows=0, train_name="train.txt"):
    """The first rows of the real lcqmc_small splits, as a data_dir."""
    directory.mkdir(exist_ok=True)
    for name, split, count in ((train_name, "train", train_rows), ("dev.txt", "dev", dev_rows)):
        if count:
            rows = read_lines(shared_data(f"lcqmc_small/{split}.txt"))[:count]
            (directory / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return directory


# ----------------------------------------------------------------------------- run_classifier


def test_fine_tuned_from_hf_then_exported_to_savedmodel_and_back_to_hf(hf, tmp_path):
    out = tmp_path / "out"
    run_classifier(
        [
            "--task_name=lcqmc",
            f"--data_dir={_lcqmc_slice(tmp_path / 'data', 64, 16)}",
            f"--init_checkpoint={hf.pretraining}",
            f"--output_dir={out}",
            "--do_train",
            "--do_eval",
            "--max_seq_length=32",
            "--train_batch_size=16",
            "--num_train_steps=4",
            "--learning_rate=1e-3",
            "--save_checkpoints_steps=0",
        ]
    )
    # Self-contained: the HF config (converted), the vocab and the tokenizer's settings.
    info = json.loads((out / "model_info.json").read_text())
    assert info["init_checkpoint"] == hf.pretraining and info["do_lower_case"] is False
    assert (out / "vocab.txt").read_bytes() == open(hf.vocab, "rb").read()
    config = checkpoints.model_config(init_checkpoint=str(out))
    assert config.to_dict() == hf_checkpoint.read_hf_config(hf.pretraining).to_dict()
    # Started from the HF weights: 4 AdamW steps of at most 1e-3 (the original's AdamW has
    # no bias correction: up to 3.2 x lr a step) move a weight by 0.013 at most, where
    # another start would differ by ~0.5.
    start = hf_checkpoint.read_hf_checkpoint(hf.pretraining).weights
    tuned = checkpoints.read_tensors(out)
    moved = {n: np.abs(tuned[n] - start[n]).max() for n in start if n.startswith("bert/")}
    assert max(moved.values()) < 0.015 and moved["bert/pooler/dense/kernel"] > 0, moved

    export_dir = str(tmp_path / "savedmodel")
    export_savedmodel.export_savedmodel(config, str(out), export_dir)
    loaded = tf.saved_model.load(export_dir)
    assert [name.decode() for name in loaded.label_names.numpy()] == ["different", "same"]
    hf_back = tmp_path / "hf_back"
    summary = to_hf.convert(config, str(out), str(hf_back), vocab_file=str(out / "vocab.txt"))
    assert summary["label_names"] == ["different", "same"]
    back = transformers.AlbertForSequenceClassification.from_pretrained(hf_back).eval()
    assert back.config.id2label == LABELS

    ids, mask, segments = u.random_inputs(4, 24, seed=3)
    ours, _ = inference.load_classifier(str(out), config)
    our_probs = inference.classifier_probabilities(ours, ids, mask, segments)["probabilities"]
    served = loaded.signatures["classifier"](
        input_ids=tf.constant(ids), input_mask=tf.constant(mask), segment_ids=tf.constant(segments)
    )["probabilities"]
    theirs = _hf_probabilities(back, ids, mask, segments)
    np.testing.assert_allclose(theirs, our_probs.numpy(), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(theirs, served.numpy(), atol=TOLERANCE, rtol=0)
    assert np.abs(theirs - 0.5).max() > 0.01  # not a uniform, untrained head


def test_an_hf_classifier_predicts_in_run_classifier_with_its_label_names(hf, tmp_path):
    """No training: run_classifier.py predicts with the HF classifier itself, equal to HF
    PyTorch on HF's own tokenization. The generic tsv task's labels are "0"/"1"; the HF
    model's id2label names them, and those names are what the output directory records."""
    rows = [row.split("\t") for row in read_lines(shared_data("lcqmc_small/test.txt"))[:8]]
    (tmp_path / "test.tsv").write_text("\n".join("\t".join(r) for r in rows) + "\n")
    out = tmp_path / "out"
    run_classifier(
        [
            "--task_name=tsv",
            "--labels=0,1",
            f"--data_dir={tmp_path}",
            f"--init_checkpoint={hf.classifier}",
            f"--output_dir={out}",
            "--do_predict",
            "--max_seq_length=64",
        ]
    )
    info = json.loads((out / "model_info.json").read_text())
    assert info["labels"] == ["0", "1"] and info["label_names"] == ["different", "same"]
    predicted = np.loadtxt(out / "test_results.tsv", delimiter="\t")
    tokenizer = transformers.BertTokenizer(hf.vocab, do_lower_case=True)
    encoded = tokenizer([r[0] for r in rows], [r[1] for r in rows], padding=True)
    theirs = _hf_probabilities(
        hf.classifier_model,
        encoded["input_ids"],
        encoded["attention_mask"],
        encoded["token_type_ids"],
    )
    np.testing.assert_allclose(predicted, theirs, atol=TOLERANCE, rtol=0)


def test_classes_that_do_not_match_the_task_are_one_line_errors(hf, tmp_path):
    base = [f"--init_checkpoint={hf.classifier}", "--do_train", "--max_seq_length=32"]
    with pytest.raises(AlbertError, match=r"classifier of 2 classes \(different, same\) but "):
        run_classifier(["--task_name=ocnli", f"--output_dir={tmp_path / 'a'}", *base])
    (tmp_path / "train.tsv").write_text("好\tsame\n坏\tdifferent\n", encoding="utf-8")
    with pytest.raises(AlbertError, match="orders its classes.*--labels=different,same"):
        run_classifier(
            [
                "--task_name=tsv",
                f"--data_dir={tmp_path}",
                "--labels=same,different",
                f"--output_dir={tmp_path / 'b'}",
                *base,
            ]
        )
    with pytest.raises(AlbertError, match="Hugging Face directory.*drop --style brightmart"):
        run_classifier(
            ["--task_name=lcqmc", f"--output_dir={tmp_path / 'c'}", "--style=brightmart", *base]
        )


def test_a_config_that_does_not_fit_and_missing_weights_are_one_line_errors(hf, tmp_path):
    unfit = checkpoints.model_config(write_config(tmp_path, dict(TINY, hidden_size=32)))
    with pytest.raises(AlbertError, match="hidden_size=32 but the checkpoint 64") as error:
        export_savedmodel.export_savedmodel(unfit, hf.classifier, str(tmp_path / "unfit"))
    assert "\n" not in str(error.value)
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    shutil.copyfile(f"{hf.classifier}/config.json", weightless / "config.json")
    config = checkpoints.model_config(init_checkpoint=weightless)  # config.json is enough
    with pytest.raises(AlbertError, match="has no model weights: expected model.safetensors"):
        inference.load_classifier(weightless, config)


# ----------------------------------------------------------------------------- run_pretraining


def test_continued_pretraining_starts_from_the_hf_weights(hf, tmp_path):
    """--do_eval before any step: our loss on the data equals HF PyTorch's on the same data."""
    L, P = 32, 5
    sentences = pf.read_sentences(shared_data("corpus_sample/news_zh_1.txt"), limit=300)
    examples = pf.make_examples(sentences, hf.vocab, 24, L, P)
    records = pf.write_tfrecords([tmp_path / "eval.tfrecord"], examples)
    out = tmp_path / "out"
    run_pretraining(
        [
            f"--init_checkpoint={hf.pretraining}",
            f"--input_file={records[0]}",
            f"--output_dir={out}",
            "--do_eval",
            f"--max_seq_length={L}",
            f"--max_predictions_per_seq={P}",
            "--eval_batch_size=8",
        ]
    )
    lines = (out / "eval_results.txt").read_text().splitlines()[1:]
    ours = {key: float(value) for key, value in (line.split(" = ") for line in lines)}
    assert ours["global_step"] == 0

    spec = {
        "input_ids": tf.io.FixedLenFeature([L], tf.int64),
        "input_mask": tf.io.FixedLenFeature([L], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([L], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([P], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([P], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([P], tf.float32),
        "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
    }
    batch = {k: v.numpy() for k, v in tf.io.parse_example(examples, spec).items()}
    inputs = hf_utils.torch_inputs(batch["input_ids"], batch["input_mask"], batch["segment_ids"])
    with torch.inference_mode():
        outputs = hf.pretraining_model(**inputs)
    log_probs = torch.log_softmax(outputs.prediction_logits.double(), -1).numpy()
    positions, weights = batch["masked_lm_positions"], batch["masked_lm_weights"]
    at = np.take_along_axis(log_probs, positions[:, :, None], axis=1)
    nll = -np.take_along_axis(at, batch["masked_lm_ids"][:, :, None], axis=2)[..., 0]
    sop = torch.log_softmax(outputs.sop_logits.double(), -1).numpy()
    sop_nll = -np.take_along_axis(sop, batch["next_sentence_labels"], axis=1)
    expected = {
        "masked_lm_loss": (nll * weights).sum() / weights.sum(),
        "sentence_order_loss": sop_nll.mean(),
    }
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, rel=1e-4), key
    assert expected["masked_lm_loss"] > 1.0  # a real loss, not a trivially equal 0
    saved = checkpoints.model_config(init_checkpoint=str(out))  # output_dir keeps the config
    assert saved.to_dict() == hf_checkpoint.read_hf_config(hf.pretraining).to_dict()


# ----------------------------------------------------------------------------- checkpoints.py


def test_sources_resolve_to_hf_or_tf_and_the_reading_is_cached(hf, tmp_path):
    classifier = hf.classifier
    assert checkpoints.resolve_checkpoint_path(f"{classifier}/model.safetensors") == classifier
    assert checkpoints.detect_checkpoint_style(classifier) == "google"
    assert checkpoints.global_step_of(classifier) == 0
    heads = checkpoints.checkpoint_heads(classifier)
    assert (heads.num_labels, heads.masked_lm) == (2, False)
    assert checkpoints.label_names(hf.pretraining) is None
    with pytest.raises(AlbertError, match="never downloads.*download voidful/albert_chinese_tiny"):
        checkpoints.model_config(init_checkpoint="voidful/albert_chinese_tiny")

    # A TF checkpoint directory with a config.json of ours (no model_type) stays a TF one.
    prefix = checkpoints.save_tensors({"global_step": np.int64(3)}, tmp_path / "tf" / "model")
    write_config(tmp_path / "tf", {"hidden_size": 32})
    assert checkpoints.resolve_checkpoint_path(tmp_path / "tf") == prefix
    assert not checkpoints.is_hf_directory(tmp_path / "tf")

    copy = shutil.copytree(classifier, tmp_path / "copy")
    first = checkpoints.read_hf_directory(copy)
    assert checkpoints.read_hf_directory(copy) is first
    config_path = copy / "config.json"
    values = json.loads(config_path.read_text())
    values["id2label"] = {"0": "no", "1": "yes"}
    config_path.write_text(json.dumps(values))
    assert checkpoints.label_names(copy) == ["no", "yes"]  # a changed file is read again


# ----------------------------------------------------------------------------- the CLIs


@pytest.mark.slow
def test_hf_classifier_directory_serves_the_clis_directly_and_mistakes_are_one_line(hf, tmp_path):
    """export_savedmodel.py and similarity.py with only --init_checkpoint=DIR, equal to HF
    PyTorch; a non-ALBERT directory and a SentencePiece-only one each end in one `error:`
    line. One batch of concurrent processes, since each pays the TensorFlow import."""
    rows = [row.split("\t") for row in read_lines(shared_data("lcqmc_small/test.txt"))[:3]]
    pairs = [text for row in rows for text in row[:2]]
    export_dir = tmp_path / "savedmodel"

    bert = tmp_path / "bert"
    transformers.BertModel(
        transformers.BertConfig(
            vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4
        )
    ).save_pretrained(bert)
    spiece = shutil.copytree(hf.pretraining, tmp_path / "spiece")
    (spiece / "vocab.txt").unlink()
    (spiece / "spiece.model").write_bytes(b"\x0a\x00")

    results = u.run_clis(
        [
            [
                "export_savedmodel.py",
                f"--init_checkpoint={hf.classifier}",
                f"--export_dir={export_dir}",
            ],
            ["similarity.py", f"--init_checkpoint={hf.classifier}", *pairs],
            ["export_tflite.py", f"--init_checkpoint={bert}", f"--output_file={tmp_path}/x.tflite"],
            [
                "run_classifier.py",
                "--task_name=lcqmc",
                f"--init_checkpoint={spiece}",
                f"--output_dir={tmp_path / 'out'}",
                "--do_train",
            ],
        ]
    )
    exported, scored, not_albert, sentencepiece = results
    assert exported[0] == 0, exported[2][-3000:]
    assert json.loads(exported[1].strip().splitlines()[-1])["label_names"] == ["different", "same"]
    assert scored[0] == 0, scored[2][-3000:]
    u.assert_one_line_error(not_albert, "holds a bert model (BertModel), not ALBERT")
    u.assert_one_line_error(sentencepiece, "SentencePiece", "WordPiece")

    loaded = tf.saved_model.load(str(export_dir))
    assert [name.decode() for name in loaded.label_names.numpy()] == ["different", "same"]
    ids, mask, segments = u.random_inputs(4, 24, seed=5)
    served = loaded.signatures["classifier"](
        input_ids=tf.constant(ids), input_mask=tf.constant(mask), segment_ids=tf.constant(segments)
    )["probabilities"]
    theirs = _hf_probabilities(hf.classifier_model, ids, mask, segments)
    np.testing.assert_allclose(theirs, served.numpy(), atol=TOLERANCE, rtol=0)

    # similarity.py end to end against HF's own tokenizer and model ("same" = label 1).
    tokenizer = transformers.BertTokenizer(hf.vocab, do_lower_case=True)
    encoded = tokenizer([r[0] for r in rows], [r[1] for r in rows], padding=True)
    expected = _hf_probabilities(
        hf.classifier_model,
        encoded["input_ids"],
        encoded["attention_mask"],
        encoded["token_type_ids"],
    )[:, 1]
    printed = [float(line.split("\t")[0]) for line in scored[1].strip().splitlines()]
    np.testing.assert_allclose(printed, expected, atol=TOLERANCE, rtol=0)
