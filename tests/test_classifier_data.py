"""Readers, feature conversion and batching of classifier_data.py on the real shared data.

Counts are checked against an independent count of the files (plain line counting / json),
not against the reader itself.
"""

import json

import numpy as np
import pytest

import classifier_data
import errors
import tokenization
from tests import padding_oracle
from tests.conftest import shared_data


def independent_counts(path):
    """The non-empty lines of a file, read naively (no header or label logic)."""
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    return lines


def read(task, relative_dir, split, **kwargs):
    data_dir = shared_data(relative_dir)
    processor = classifier_data.get_processor(task, data_dir=str(data_dir), **kwargs)
    path = processor.split_path(str(data_dir), split)
    examples = processor.get_examples(path, split)
    return examples, processor.reports[split], processor


# (task, directory, split, number of lines = number of examples)
PAIR_FILES = [
    ("lcqmc", "lcqmc_small", "train", 7922),
    ("lcqmc", "lcqmc_small", "dev", 880),
    ("lcqmc", "lcqmc_small", "test", 6250),
    ("bq_corpus", "bq_corpus", "dev", 10000),
    ("paws_x", "paws_x_zh", "dev", 2000),
    ("oppo", "oppo", "dev", 10000),
]


@pytest.mark.parametrize("task,directory,split,expected", PAIR_FILES)
def test_pair_tsv_files_lose_no_example(task, directory, split, expected):
    examples, report, _ = read(task, directory, split)
    lines = independent_counts(report.path)
    assert len(lines) == expected
    assert len(examples) == expected  # the original lost line 1 of every LCQMC file
    assert report.num_malformed == 0 and not report.skipped
    first = lines[0].split("\t")
    assert (examples[0].text_a, examples[0].text_b, examples[0].label) == (
        first[0].strip(),
        first[1].strip(),
        first[2],
    )
    labels = [line.split("\t")[2] for line in lines]
    assert [e.label for e in examples] == labels


def test_lcqmc_alias_and_label_balance():
    examples, _, processor = read("lcqmc_pair", "lcqmc_small", "dev")
    assert processor.get_labels() == ["0", "1"]
    assert sum(e.label == "1" for e in examples) == 445


def test_bq_test_file_is_unlabelled():
    # The shared BQ test.tsv has only text_a<TAB>text_b: predicted, not scored.
    examples, report, _ = read("bq_corpus", "bq_corpus", "test")
    assert len(examples) == 10000 and report.num_unlabelled == 10000
    assert all(e.label is None for e in examples)


@pytest.mark.parametrize("split,expected", [("train", 9600), ("dev", 1200), ("test", 1200)])
def test_chnsenticorp_header_and_label_first(split, expected):
    examples, report, _ = read("chnsenticorp", "chnsenticorp", split)
    lines = independent_counts(shared_data(f"chnsenticorp/{split}.tsv"))
    assert lines[0] == "label\ttext_a"
    assert len(examples) == expected == len(lines) - 1
    assert report.skipped == {"header line": 1} and report.num_malformed == 0
    assert examples[0].label == lines[1].split("\t")[0]
    assert examples[0].text_a == lines[1].split("\t")[1].strip()
    assert examples[0].text_b is None


@pytest.mark.parametrize("split", ["dev", "test"])
def test_thucnews_titles_ten_classes(split):
    examples, report, processor = read("thucnews", "thucnews_titles", split)
    assert len(examples) == 10000 and report.num_malformed == 0
    assert processor.get_labels() == [str(i) for i in range(10)]
    assert processor.label_names()[0] == "finance" and len(processor.label_names()) == 10
    counts = np.bincount([int(e.label) for e in examples], minlength=10)
    assert counts.tolist() == [1000] * 10


@pytest.mark.parametrize("split,file_name", [("train", "train.10k.json"), ("dev", "dev.json")])
def test_ocnli_skips_and_counts_no_gold_label(split, file_name):
    examples, report, _ = read("ocnli", "ocnli", split)
    with open(shared_data(f"ocnli/{file_name}"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    no_gold = sum(r["label"] == "-" for r in rows)
    assert no_gold > 0  # dev has 50, train.10k 15
    assert report.skipped == {"no gold label ('-')": no_gold}
    assert len(examples) == len(rows) - no_gold
    assert report.path.endswith(file_name)
    gold = [r for r in rows if r["label"] != "-"]
    assert [e.label for e in examples] == [r["label"] for r in gold]
    assert examples[0].text_b == gold[0]["sentence2"]


def write_bytes(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return tmp_path


BAD_LCQMC = (
    "\ufeff好的\t不错\t1\r\n".encode()  # BOM + CRLF: a good row
    + b"only two\tcolumns\r\n"  # wrong column count
    + "甲\t乙\t2\n".encode()  # unknown label
    + "\t乙\t0\n".encode()  # empty text
    + b"\xff\xfe bad\tbytes\t1\n"  # invalid UTF-8
    + b"\n"  # blank line: skipped, not malformed
    + "最后\t一行\t0".encode()  # no final newline
)


def test_malformed_rows_are_counted_and_located(tmp_path):
    data_dir = write_bytes(tmp_path, "train.txt", BAD_LCQMC)
    processor = classifier_data.get_processor("lcqmc")
    examples = processor.get_train_examples(str(data_dir))
    report = processor.reports["train"]
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [
        ("好的", "不错", "1"),
        ("最后", "一行", "0"),
    ]
    assert report.malformed == {
        "2 columns, expected 3": 1,
        "unknown label '2'": 1,
        "empty text": 1,
        "invalid UTF-8": 1,
    }
    assert report.skipped == {"blank lines": 1}
    assert [q.split(": ")[0] for q in report.quoted] == [
        f"{data_dir / 'train.txt'}:{n}" for n in (2, 3, 4, 5)
    ]
    assert "4 malformed rows" in report.summary()


def test_strict_makes_the_first_bad_row_fatal(tmp_path):
    data_dir = write_bytes(tmp_path, "train.txt", BAD_LCQMC)
    processor = classifier_data.get_processor("lcqmc", strict=True)
    with pytest.raises(errors.AlbertError, match=r"train\.txt:2: malformed row \(2 columns"):
        processor.get_train_examples(str(data_dir))


def test_header_only_when_label_field_is_a_header_word(tmp_path):
    data_dir = write_bytes(tmp_path, "dev.txt", "text_a\ttext_b\tlabel\n一\t二\t1\n".encode())
    processor = classifier_data.get_processor("lcqmc")
    assert len(processor.get_dev_examples(str(data_dir))) == 1
    assert processor.reports["dev"].skipped == {"header line": 1}


def test_missing_file_and_unknown_task_are_user_errors(tmp_path):
    with pytest.raises(errors.AlbertError, match="no train file"):
        classifier_data.get_processor("lcqmc").get_train_examples(str(tmp_path))
    with pytest.raises(errors.AlbertError, match="unknown task_name"):
        classifier_data.get_processor("mnli")


def test_generic_tsv_task_single_and_pair(tmp_path):
    (tmp_path / "train.tsv").write_text("text\tlabel\n好\tpos\n坏\tneg\n", encoding="utf-8")
    (tmp_path / "test.tsv").write_text("还行\n", encoding="utf-8")
    processor = classifier_data.get_processor("tsv", data_dir=str(tmp_path))
    assert processor.get_labels() == ["neg", "pos"]
    train = processor.get_train_examples(str(tmp_path))
    assert [(e.text_a, e.text_b, e.label) for e in train] == [
        ("好", None, "pos"),
        ("坏", None, "neg"),
    ]
    test = processor.get_test_examples(str(tmp_path))
    assert test[0].label is None and test[0].text_a == "还行"

    pair_dir = tmp_path / "pair"
    pair_dir.mkdir()
    (pair_dir / "train.tsv").write_text("一\t二\tx\n", encoding="utf-8")
    processor = classifier_data.get_processor("tsv", data_dir=str(pair_dir), labels=["x", "y"])
    assert processor.get_labels() == ["x", "y"]
    assert processor.get_train_examples(str(pair_dir))[0].text_b == "二"


def test_features_match_the_tokenizer_and_padding_is_per_batch(vocab_file):
    tokenizer = tokenization.FullTokenizer(str(vocab_file))
    examples, _, processor = read("lcqmc", "lcqmc_small", "dev")
    features = classifier_data.convert_examples_to_features(
        examples, processor.get_labels(), 64, tokenizer
    )
    assert len(features) == 880
    first = examples[0]
    expected_tokens = ["[CLS]"] + tokenizer.tokenize(first.text_a) + ["[SEP]"]
    expected_tokens += tokenizer.tokenize(first.text_b) + ["[SEP]"]
    assert features.input_ids[0].tolist() == tokenizer.convert_tokens_to_ids(expected_tokens)
    assert features.label_ids[0] == int(first.label)
    assert features.lengths.max() <= 64

    # Every example appears exactly once per epoch, in batches of similar length.
    batches = classifier_data.make_batches(features.lengths, 32, shuffle=True, seed=3)
    assert sorted(np.concatenate(batches).tolist()) == list(range(880))
    padded = [padding_oracle.pad_batch(features, b, 64)["input_ids"].shape[1] for b in batches]
    assert all(p % 16 == 0 or p == 64 for p in padded)
    assert np.mean(padded) < 64 * 0.75  # dynamic padding is the point
    batch = padding_oracle.pad_batch(features, batches[0], 64)
    for row, index in enumerate(batches[0]):
        n = features.lengths[index]
        assert batch["input_mask"][row].sum() == n
        assert batch["input_ids"][row, :n].tolist() == features.input_ids[index].tolist()
        assert not batch["input_ids"][row, n:].any()

    fixed = padding_oracle.pad_batch(features, batches[0], 64, fixed_length=True)
    assert fixed["input_ids"].shape == (32, 64)


def test_evaluation_batches_keep_every_example_once_and_unshuffled_order():
    lengths = np.array([5, 3, 9, 1, 7])
    batches = classifier_data.make_batches(lengths, 2, shuffle=False, bucket=False)
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    bucketed = classifier_data.make_batches(lengths, 2, shuffle=False, bucket=True)
    assert [b.tolist() for b in bucketed] == [[3, 1], [0, 4], [2]]


def test_training_stream_is_exact_epochs_and_resumable():
    lengths = np.arange(100) % 37 + 3
    stream = classifier_data.training_batch_stream(lengths, 32, seed=7)
    per_epoch = classifier_data.batches_per_epoch(100, 32)
    assert per_epoch == 4
    batches = [next(stream) for _ in range(3 * per_epoch)]
    for epoch in range(3):
        seen = np.concatenate(batches[epoch * per_epoch : (epoch + 1) * per_epoch])
        assert sorted(seen.tolist()) == list(range(100))  # every example once per epoch
    assert batches[0].tolist() != batches[per_epoch].tolist()  # epochs are reshuffled
    resumed = classifier_data.training_batch_stream(lengths, 32, seed=7, start_batch=6)
    assert [next(resumed).tolist() for _ in range(6)] == [b.tolist() for b in batches[6:]]
    dropped = classifier_data.training_batch_stream(lengths, 32, seed=7, drop_remainder=True)
    assert all(len(next(dropped)) == 32 for _ in range(10))


def test_dataset_batches_equal_pad_batch_and_have_dynamic_shapes(vocab_file):
    tokenizer = tokenization.FullTokenizer(str(vocab_file))
    examples, _, processor = read("lcqmc", "lcqmc_small", "dev")
    features = classifier_data.convert_examples_to_features(
        examples[:100], processor.get_labels(), 64, tokenizer
    )
    stream = classifier_data.training_batch_stream(features.lengths, 32, seed=1)
    batches = [next(stream) for _ in range(6)]  # 1.5 epochs: a partial batch in the middle
    dataset = classifier_data.make_dataset(features, batches, 64)
    assert dataset.element_spec["input_ids"].shape.as_list() == [None, None]
    produced = list(dataset.as_numpy_iterator())
    assert len(produced) == 6
    for got, indices in zip(produced, batches, strict=True):
        expected = padding_oracle.pad_batch(features, indices, 64)
        assert got.keys() == expected.keys()
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert sum(len(b["label_ids"]) for b in produced[:4]) == 100
    assert len({b["input_ids"].shape[1] for b in produced}) > 1  # padded per batch

    full = [b for b in batches if len(b) == 32]
    fixed = classifier_data.make_dataset(features, full, 64, fixed_length=True, batch_size=32)
    assert fixed.element_spec["input_ids"].shape.as_list() == [32, 64]
    for got, indices in zip(list(fixed.as_numpy_iterator()), full, strict=True):
        expected = padding_oracle.pad_batch(features, indices, 64, fixed_length=True)
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
