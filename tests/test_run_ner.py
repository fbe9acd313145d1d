"""run_ner.py end to end: real CLUENER sentences, a generated BIOES file, and user mistakes.

A tiny google-style ALBERT (hidden 64, 2 layers) learns 48 real CLUENER training sentences
from scratch, with the softmax head and with the CRF, and must then find their entities again
(dev = the same sentences: this checks the whole path from characters to tags and back, not
generalisation). The bio task runs on a generated BIOES file that holds the bad input a user
meets: CRLF line ends and a BOM, an unknown tag, an `I-` without `B-`, an empty sentence and a
2,000-character sentence that only fits in windows. The script runs in-process (absl flags
re-parsed per run) except where the exit status and stderr are what is tested.
"""

import json

import numpy as np
import pytest
from absl import flags

import checkpoints
import errors
import ner_data
import run_ner
from tests import export_test_utils as u
from tests.conftest import shared_data

TINY_CONFIG = {
    "vocab_size": 21128, "embedding_size": 32, "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "intermediate_size": 128, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
    "max_position_embeddings": 128, "type_vocab_size": 2, "initializer_range": 0.02,
    "num_hidden_groups": 1, "inner_group_num": 1,
}  # fmt: skip
CLUENER_TYPES = [
    "address", "book", "company", "game", "government", "movie", "name", "organization",
    "position", "scene",
]  # fmt: skip


def run(args):
    """run_ner.main in-process on its own FlagValues (run_classifier.py shares flag names)."""
    flag_values = flags.FlagValues()
    run_ner.define_flags(flag_values)
    flag_values(["run_ner.py"] + args)
    saved, run_ner.FLAGS = run_ner.FLAGS, flag_values
    try:
        run_ner.main([])
    finally:
        run_ner.FLAGS = saved


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def records(output_dir):
    return [json.loads(line) for line in read_lines(output_dir / "eval_results.jsonl")]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A data directory with 48 real CLUENER train sentences (as train and dev), the first 30
    test sentences, and the tiny config."""
    directory = tmp_path_factory.mktemp("cluener")
    train = read_lines(shared_data("cluener/train.json"))[:48]
    (directory / "train.json").write_text("\n".join(train) + "\n", encoding="utf-8")
    (directory / "dev.json").write_text("\n".join(train) + "\n", encoding="utf-8")
    test = read_lines(shared_data("cluener/test.json"))[:30]
    (directory / "test.json").write_text("\n".join(test) + "\n", encoding="utf-8")
    config = directory / "config.json"
    config.write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    return directory


def cluener_args(work, output_dir, *extra):
    return [
        "--task_name=cluener",
        f"--data_dir={work}",
        f"--vocab_file={shared_data('vocab.txt')}",
        f"--bert_config_file={work / 'config.json'}",
        f"--output_dir={output_dir}",
        "--max_seq_length=64",
        "--eval_batch_size=64",
        "--predict_batch_size=16",
        "--train_batch_size=16",
        "--learning_rate=1e-3",
        "--warmup_proportion=0",
        "--classifier_dropout=0",
        "--iterations_per_loop=50",
        "--save_checkpoints_steps=0",
        *extra,
    ]


@pytest.fixture(scope="module")
def softmax_run(work, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("softmax") / "out"
    run(
        cluener_args(
            work,
            output_dir,
            "--do_train",
            "--do_eval",
            "--do_predict",
            "--num_train_steps=120",
        )
    )
    return output_dir


def test_softmax_head_learns_the_training_sentences(softmax_run):
    final = json.loads((softmax_run / "final_results.json").read_text())
    assert final["dev"]["f1"] > 0.6, final["dev"]
    assert final["checkpoint"] == checkpoints.BEST_CHECKPOINT
    dev = [r for r in records(softmax_run) if r["split"] == "dev"]
    # one evaluation per epoch (3 steps each), the best kept
    assert [r["global_step"] for r in dev] == list(range(3, 121, 3))
    assert final["global_step"] == max(dev, key=lambda r: r["f1"])["global_step"]
    assert dev[-1]["num_sentences"] == 48 and dev[-1]["num_entities"] == 103
    assert set(dev[-1]["per_type"]) == set(CLUENER_TYPES)
    text = (softmax_run / "eval_results.txt").read_text()
    for line in ("precision = ", "recall = ", "f1 = ", "name: precision = "):
        assert line in text


def test_model_directory_describes_the_tagger(softmax_run):
    info = json.loads((softmax_run / "model_info.json").read_text())
    assert info["task"] == "token_classification" and info["tag_scheme"] == "BIO"
    assert info["labels"] == ner_data.tag_list(CLUENER_TYPES, "BIO")
    assert info["use_crf"] is False and info["max_seq_length"] == 64
    stored = checkpoints.checkpoint_variable_names(softmax_run / "model.ckpt-best")
    assert stored["output_weights"] == [21, 64] and "output_transitions" not in stored
    heads = checkpoints.checkpoint_heads(softmax_run)
    assert heads.token_level and not heads.crf and heads.num_labels == 21


def test_cluener_predictions_are_a_submission(softmax_run):
    texts = [json.loads(line)["text"] for line in read_lines(shared_data("cluener/test.json"))]
    submission = [json.loads(line) for line in read_lines(softmax_run / "cluener_predict.json")]
    assert [row["id"] for row in submission] == list(range(30))
    found = 0
    for row in submission:
        for entity_type, mentions in row["label"].items():
            assert entity_type in CLUENER_TYPES
            for mention, offsets in mentions.items():
                for start, end in offsets:  # inclusive offsets into the test text
                    assert texts[row["id"]][start : end + 1] == mention
                    found += 1
    assert found > 10
    readable = read_lines(softmax_run / "test_predictions.txt")
    assert len(readable) == 30
    assert all(line.split("\t")[0] == texts[i] for i, line in enumerate(readable))


def test_crf_head_learns_and_evaluates_from_its_directory(work, tmp_path):
    output_dir = tmp_path / "crf"
    run(
        cluener_args(
            work,
            output_dir,
            "--do_train",
            "--do_eval",
            "--use_crf",
            "--crf_learning_rate=1e-2",
            "--num_train_steps=120",
            "--noeval_every_epoch",
        )
    )
    trained = json.loads((output_dir / "final_results.json").read_text())["dev"]
    assert trained["f1"] > 0.6, trained
    heads = checkpoints.checkpoint_heads(output_dir)
    assert heads.crf and heads.token_level and heads.tag_scheme == "BIO"
    transitions = checkpoints.read_tensors(output_dir, names=["output_transitions"])
    assert np.abs(transitions["output_transitions"]).max() > 0.05  # the CRF learned
    # Evaluation only, from the directory: tags, scheme and head come from the model itself.
    run(
        [
            "--task_name=cluener",
            f"--dev_file={work / 'dev.json'}",
            f"--vocab_file={shared_data('vocab.txt')}",
            f"--bert_config_file={output_dir / 'albert_config.json'}",
            f"--output_dir={output_dir}",
            "--do_eval",
            "--max_seq_length=64",
        ]
    )
    again = records(output_dir)[-1]
    assert again["checkpoint"] == checkpoints.BEST_CHECKPOINT
    assert again["f1"] == pytest.approx(trained["f1"])


# ----------------------------------------------------------------------------- bio task


def bioes_block(example):
    tags = ner_data.spans_to_tags(example.entities, len(example.text), "BIOES")
    return [f"{char} {tag}" for char, tag in zip(example.text, tags, strict=True)]


def write_blocks(path, blocks, crlf_and_bom=False):
    text = "\n\n".join("\n".join(block) for block in blocks) + "\n"
    if crlf_and_bom:
        path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    else:
        path.write_text(text, encoding="utf-8")


I_WITHOUT_B = ["小 O", "明 I-name", "来 O"]  # BIOES: read as one entity, like seqeval
NOT_A_TAG = ["甲 X-name", "乙 O"]  # not a BIOES tag: the sentence is skipped
EMPTY = ["  O"]  # a sentence whose only character is a space
ALIEN = ["外 B-alien", "星 E-alien"]  # a BIOES tag, but of a type the train file lacks


@pytest.fixture(scope="module")
def bio_dir(tmp_path_factory):
    """train/dev/test.txt in BIOES made from real CLUENER dev sentences, with bad input.

    train.txt (CRLF line ends and a BOM): 40 sentences plus I_WITHOUT_B, NOT_A_TAG and EMPTY.
    dev.txt: 20 sentences of the train file's types plus ALIEN.
    test.txt: 5 unlabelled sentences and one of 2,000 characters (only fits in windows).
    """
    directory = tmp_path_factory.mktemp("bio")
    examples, _ = ner_data.read_cluener(str(shared_data("cluener/dev.json")))
    examples = [e for e in examples if " " not in e.text]
    train = examples[:40]
    types = {e.type for example in train for e in example.entities} | {"name"}
    dev = [e for e in examples[40:] if {x.type for x in e.entities} <= types][:20]
    test = examples[200:205]
    blocks = [bioes_block(e) for e in train]
    blocks[3:3] = [I_WITHOUT_B]
    blocks[9:9] = [NOT_A_TAG]
    blocks[12:12] = [EMPTY]
    write_blocks(directory / "train.txt", blocks, crlf_and_bom=True)
    write_blocks(directory / "dev.txt", [bioes_block(e) for e in dev] + [ALIEN])
    long_text = "".join(e.text for e in examples[300:400])[:2000]
    test_blocks = [list(e.text) for e in test]
    test_blocks.insert(2, list(long_text))
    write_blocks(directory / "test.txt", test_blocks)
    (directory / "config.json").write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    return directory


def bio_args(directory, output_dir, *extra):
    return [
        "--task_name=bio",
        "--tag_scheme=BIOES",
        f"--data_dir={directory}",
        f"--vocab_file={shared_data('vocab.txt')}",
        f"--bert_config_file={directory / 'config.json'}",
        f"--output_dir={output_dir}",
        "--max_seq_length=64",
        "--window_stride=20",
        "--train_batch_size=16",
        "--eval_batch_size=32",
        "--predict_batch_size=32",
        "--learning_rate=1e-3",
        "--iterations_per_loop=10",
        "--save_checkpoints_steps=0",
        *extra,
    ]


def test_bio_task_counts_bad_input_and_predicts_every_line(bio_dir, tmp_path, caplog):
    output_dir = tmp_path / "out"
    args = bio_args(bio_dir, output_dir, "--do_train", "--do_eval", "--do_predict")
    with caplog.at_level("INFO", logger="absl"):  # absl's own level may be WARNING
        run(args + ["--num_train_steps=20"])
    reports = {}
    for record in caplog.records:
        message = record.getMessage()
        if message.startswith(("train: ", "dev: ", "test: ")) and ".txt: " in message:
            reports[message.split(":")[0]] = message
    assert "41 examples; skipped 1 empty sentences; 1 malformed rows" in reports["train"]
    assert "'X-name' is not a BIOES tag" in reports["train"]
    assert "corrected: 1 invalid tag sequences" in reports["train"]
    assert "train.txt:" in reports["train"]  # where, as file:line
    assert "20 examples; 1 malformed rows (1 unknown tag 'B-alien'" in reports["dev"]
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert "test: 6 sentences -> " in log
    assert "1 sentences longer than one window were split (longest 2000 tokens)" in log

    info = json.loads((output_dir / "model_info.json").read_text())
    assert info["tag_scheme"] == "BIOES" and info["labels"][:5] == ["O"] + [
        f"{p}-address" for p in "BIES"
    ]
    evaluations = records(output_dir)  # after every epoch (3 steps) and at the end
    assert [r["global_step"] for r in evaluations] == [3, 6, 9, 12, 15, 18, 20]
    assert {r["split"] for r in evaluations} == {"dev"}
    text = (output_dir / "eval_results.txt").read_text()
    assert "f1 = " in text and "precision = " in text and "recall = " in text

    source = read_lines(bio_dir / "test.txt")
    predicted = read_lines(output_dir / "test_predictions.txt")
    assert len(predicted) == len(source) and source.count("") == 5  # 6 sentences
    block = []
    for original, line in zip(source + [""], predicted + [""], strict=True):
        if not original:  # a sentence ends: its predicted tags form a valid BIOES sequence
            assert line == "" and ner_data.first_invalid_tag(block, "BIOES") is None
            block = []
            continue
        token, tag = line.rsplit(" ", 1)
        assert token == original and tag in info["labels"]
        block.append(tag)


# ----------------------------------------------------------------------------- user mistakes


def test_strict_stops_at_the_first_bad_row(bio_dir, tmp_path):
    args = bio_args(bio_dir, tmp_path / "out", "--do_train", "--strict", "--num_train_steps=1")
    with pytest.raises(errors.AlbertError, match=r"train\.txt:\d+: malformed row \(I-name after O"):
        run(args)


def test_tags_from_labels_takes_tags_or_entity_types():
    assert run_ner.tags_from_labels(["PER", "LOC"], "BIO") == [
        "O",
        "B-PER",
        "I-PER",
        "B-LOC",
        "I-LOC",
    ]
    assert run_ner.tags_from_labels(["O", "B-X", "I-X"], "BIO") == ["O", "B-X", "I-X"]
    with pytest.raises(errors.AlbertError, match="must hold every BIO tag"):
        run_ner.tags_from_labels(["O", "B-X"], "BIO")
    with pytest.raises(errors.AlbertError, match="PER not BIO tags"):
        run_ner.tags_from_labels(["O", "PER"], "BIO")


def test_user_mistakes_are_one_line_errors(bio_dir, work, tmp_path):
    """Each is an AlbertError naming the file and line or the flag to fix, one line long."""
    base = bio_args(bio_dir, tmp_path / "o1")
    sentence_classifier = checkpoints.save_tensors(
        {"output_weights": np.zeros([2, 64], np.float32)}, str(tmp_path / "clf" / "model.ckpt")
    )
    cases = [
        (base + ["--task_name=conll", "--do_train"], "unknown --task_name 'conll': use bio or"),
        (base + ["--tag_scheme=IOB", "--do_train"], "unknown tag scheme 'IOB'"),
        (base + ["--do_eval"], "nothing to evaluate: .* add --do_train"),
        (base + ["--do_train", "--crf_learning_rate=0.01"], "--crf_learning_rate needs --use_crf"),
        (base + ["--do_train", "--labels=O,B-X"], "--labels must hold every BIOES tag"),
        (
            cluener_args(work, tmp_path / "o3", "--do_train")
            + [f"--init_checkpoint={sentence_classifier}"],
            "is a sentence classifier .* start NER from a pretrained checkpoint",
        ),
    ]
    for args, message in cases:
        with pytest.raises(errors.AlbertError, match=message) as raised:
            run(args)
        assert "\n" not in str(raised.value)


def test_bad_data_with_strict_exits_2_with_one_line(tmp_path):
    """From the command line: exit status 2, one `error:` line with file:line, no traceback."""
    write_blocks(tmp_path / "train.txt", [["中 B-X", "国 E-X"], ["星 S-X"]])
    write_blocks(tmp_path / "dev.txt", [["中 B-X", "国 E-X"], ALIEN])
    (tmp_path / "config.json").write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    args = bio_args(tmp_path, tmp_path / "out", "--do_train", "--do_eval", "--strict")
    [result] = u.run_clis([["run_ner.py", *args]])
    u.assert_one_line_error(
        result, f"{tmp_path / 'dev.txt'}:4: malformed row", "unknown tag 'B-alien'"
    )
