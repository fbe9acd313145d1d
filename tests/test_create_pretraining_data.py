"""Tests for create_pretraining_data.py on real Chinese text (the news sample and corpus
slices). Outputs are parsed back with TensorFlow and the original feature spec, and checked
against the reference tokenizer (tokenization.FullTokenizer / jieba_word_spans)."""

import collections
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

import create_pretraining_data as cpd
import errors
import pretraining_data
import tokenization
from tests import word_spans_oracle
from tests.conftest import REPO_ROOT, shared_data

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")

SEQ, PRED = 128, 20
# The original albert_zh / BERT reader's feature spec (docs/formats.md#pretraining-tfrecords).
FEATURE_SPEC = {
    "input_ids": tf.io.FixedLenFeature([SEQ], tf.int64),
    "input_mask": tf.io.FixedLenFeature([SEQ], tf.int64),
    "segment_ids": tf.io.FixedLenFeature([SEQ], tf.int64),
    "masked_lm_positions": tf.io.FixedLenFeature([PRED], tf.int64),
    "masked_lm_ids": tf.io.FixedLenFeature([PRED], tf.int64),
    "masked_lm_weights": tf.io.FixedLenFeature([PRED], tf.float32),
    "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
}


def make_config(vocab_file, **overrides):
    values = dict(
        vocab_file=str(vocab_file),
        do_whole_word_mask=True,
        dupe_factor=1,
        max_seq_length=SEQ,
        max_predictions_per_seq=PRED,
    )
    values.update(overrides)
    return cpd.GeneratorConfig(**values)


def read_examples(paths):
    examples = []
    for record in tf.data.TFRecordDataset([str(p) for p in paths]):
        parsed = tf.io.parse_single_example(record, FEATURE_SPEC)
        examples.append({name: value.numpy() for name, value in parsed.items()})
    return examples


def corpus_slice(tmp_path, name, num_chars):
    """The first `num_chars` characters of a shared corpus file, cut at a line end."""
    text = shared_data(f"corpus/{name}").read_text(encoding="utf-8")[:num_chars]
    path = tmp_path / f"slice_{name}"
    path.write_text(text[: text.rfind("\n") + 1], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def news_file():
    return shared_data("corpus_sample/news_zh_1.txt")


@pytest.fixture(scope="module")
def processor():
    vocab = shared_data("vocab.txt")
    return cpd.BlockProcessor(make_config(vocab))


@pytest.fixture(scope="module")
def reference_tokenizer():
    return tokenization.FullTokenizer(str(shared_data("vocab.txt")), do_lower_case=True)


@pytest.fixture(scope="module")
def masked_instances(tmp_path_factory):
    """About 1,600 instances (with their masking units): a 200k-character news slice, twice."""
    processor = cpd.BlockProcessor(make_config(shared_data("vocab.txt"), dupe_factor=2))
    tmp_path = tmp_path_factory.mktemp("masked")
    path = corpus_slice(tmp_path, "misc_news_clue.txt", 200_000)
    reader = cpd.InputReader([str(path)], one_document_per_line=False)
    instances, originals = [], []
    for block in cpd.iter_blocks(reader.documents(), 50_000):
        for instance in processor.block_instances(block, random.Random(block.index)):
            # Rebuild the unmasked ids from the labels (what the model must predict).
            original = list(instance.input_ids)
            for position, label in zip(
                instance.masked_positions, instance.masked_label_ids, strict=True
            ):
                original[position] = label
            instances.append(instance)
            originals.append(original)
    assert len(instances) >= 1000
    return instances, originals


# ----------------------------------------------------------------------------- tokenization


def test_fast_tokenization_and_word_starts_match_reference(
    news_file, processor, reference_tokenizer
):
    lines = [line for line in news_file.read_text(encoding="utf-8").splitlines() if line]
    lines += [
        "iPhone6手机 Café naïve ＡＢＣ１２３ \x00中\u200b国\t人 民 ㈠ 丽 𠀀𠀁 unaffable中华人民共和国",
        "[UNK] [CLS] 北京欢迎你！！ 2010年，他被评为“中国文化遗产保护年度杰出人物”。",
    ]
    for line in lines:
        ids, jieba_text, wordpiece_starts = processor.tokenize_line(line)
        tokens = reference_tokenizer.tokenize(line)
        assert ids == reference_tokenizer.convert_tokens_to_ids(tokens), line
        assert len(jieba_text) == len(wordpiece_starts) == len(ids)
        expected_starts = bytearray(len(tokens))
        for start, _ in word_spans_oracle.jieba_word_spans(tokens):
            expected_starts[start] = 1
        assert processor.word_starts(jieba_text, wordpiece_starts) == bytes(expected_starts)


# ----------------------------------------------------------------------------- output format


def test_output_parses_with_original_feature_spec(tmp_path, news_file):
    vocab = shared_data("vocab.txt")
    output = tmp_path / "news.tfrecord"
    summary = cpd.generate(make_config(vocab, dupe_factor=2), [str(news_file)], [str(output)])
    examples = read_examples([output])
    assert len(examples) == summary["instances"] > 100
    assert summary["documents"] == 10 and summary["replaced_bytes"] == 0
    assert os.path.exists(str(output) + ".summary.json")
    for example in examples:
        length = int(example["input_mask"].sum())
        assert list(example["input_mask"]) == [1] * length + [0] * (SEQ - length)
        ids = example["input_ids"]
        assert ids[0] == 101 and ids[length - 1] == 102 and not ids[length:].any()
        first_sep = int(np.argmax(ids == 102))
        segments = example["segment_ids"]
        assert not segments[: first_sep + 1].any() and segments[first_sep + 1 : length].all()
        assert not segments[length:].any()
        num_masked = int(example["masked_lm_weights"].sum())
        positions = example["masked_lm_positions"][:num_masked]
        assert list(positions) == sorted(set(positions)) and 0 < positions.min()
        assert positions.max() < length and not example["masked_lm_positions"][num_masked:].any()
        assert example["next_sentence_labels"][0] in (0, 1)


def test_hand_serialization_equals_tf_train_example(processor, news_file):
    reader = cpd.InputReader([str(news_file)], one_document_per_line=False)
    block = next(cpd.iter_blocks(reader.documents(), 5_000))
    instances = list(processor.block_instances(block, random.Random(0)))
    for instance in instances[:20]:
        n = len(instance.input_ids)
        k = len(instance.masked_positions)
        padding = [0] * (SEQ - n)

        def ints(values):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

        expected = tf.train.Example(
            features=tf.train.Features(
                feature={
                    "input_ids": ints(instance.input_ids + padding),
                    "input_mask": ints([1] * n + padding),
                    "segment_ids": ints(
                        [0] * instance.num_segment_a_tokens
                        + [1] * (n - instance.num_segment_a_tokens)
                        + padding
                    ),
                    "masked_lm_positions": ints(instance.masked_positions + [0] * (PRED - k)),
                    "masked_lm_ids": ints(instance.masked_label_ids + [0] * (PRED - k)),
                    "masked_lm_weights": tf.train.Feature(
                        float_list=tf.train.FloatList(value=[1.0] * k + [0.0] * (PRED - k))
                    ),
                    "next_sentence_labels": ints([instance.is_swapped]),
                }
            )
        )
        assert tf.train.Example.FromString(processor.serialize(instance)) == expected


# ----------------------------------------------------------------------------- masking


def test_masking_rate_is_masked_lm_prob(masked_instances):
    instances, _ = masked_instances
    masked = sum(len(instance.masked_positions) for instance in instances)
    tokens = sum(len(instance.input_ids) for instance in instances)
    assert abs(masked / tokens - 0.15) < 0.01


def test_every_masked_word_is_masked_whole(masked_instances):
    instances, _ = masked_instances
    multi_token_words = 0
    for instance in instances:
        masked = set(instance.masked_positions)
        for unit in instance.word_units:
            assert all(p in masked for p in unit) or not any(p in masked for p in unit)
            multi_token_words += len(unit) > 1 and unit[0] in masked
    assert multi_token_words > 1000  # real jieba words, not single characters


def test_word_units_are_jieba_words_of_any_length(processor, reference_tokenizer):
    text = "中华人民共和国成立了，北京欢迎你。"
    ids, jieba_text, wordpiece_starts = processor.tokenize_line(text)
    tokens = reference_tokenizer.convert_ids_to_tokens(ids)
    starts = processor.word_starts(jieba_text, wordpiece_starts)
    units = processor.masking_units(len(ids), 0, starts)
    words = ["".join(tokens[p - 1] for p in unit) for unit in units]
    assert words[0] == "中华人民共和国"  # 7 characters; the original stopped at 3


def test_80_10_10_and_replacements_are_real_tokens(masked_instances, processor):
    instances, originals = masked_instances
    vocab_tokens = processor.tokenizer.inv_vocab
    counts = collections.Counter()
    for instance, original in zip(instances, originals, strict=True):
        for position in instance.masked_positions:
            shown = instance.input_ids[position]
            if shown == processor.mask_id:
                counts["mask"] += 1
            elif shown == original[position]:
                counts["keep"] += 1
            else:
                counts["random"] += 1
                token = vocab_tokens[shown]
                assert not (token.startswith("[") and token.endswith("]")), token
                assert not (token.startswith("##") and word_spans_oracle.is_cjk_token(token[2:]))
    total = sum(counts.values())
    assert total > 15_000
    # Binomial standard deviations are <= 0.3%; 1 point is > 3 sigma.
    assert abs(counts["mask"] / total - 0.8) < 0.01
    assert abs(counts["keep"] / total - 0.1) < 0.01
    assert abs(counts["random"] / total - 0.1) < 0.01


def test_ngram_masking_keeps_words_whole_and_rate(tmp_path):
    vocab = shared_data("vocab.txt")
    processor = cpd.BlockProcessor(make_config(vocab, ngram=3))
    path = corpus_slice(tmp_path, "passages_wiki_rc_dialog.txt", 60_000)
    reader = cpd.InputReader([str(path)], one_document_per_line=False)
    instances = [
        i
        for b in cpd.iter_blocks(reader.documents(), 60_000)
        for i in processor.block_instances(b, random.Random(b.index))
    ]
    masked = sum(len(i.masked_positions) for i in instances)
    assert abs(masked / sum(len(i.input_ids) for i in instances) - 0.15) < 0.015
    adjacent_masked_words = 0
    for instance in instances:
        masked_set = set(instance.masked_positions)
        flags = [unit[0] in masked_set for unit in instance.word_units]
        for unit, flag in zip(instance.word_units, flags, strict=True):
            assert all((p in masked_set) == flag for p in unit)
        adjacent_masked_words += sum(a and b for a, b in zip(flags, flags[1:], strict=False))
    assert adjacent_masked_words > 100  # n-grams of several words do occur


# ----------------------------------------------------------------------------- labels, SOP


def _doc_texts(tokenizer, path):
    texts, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            current.append(line)
        elif current:
            texts.append(_plain_text(tokenizer.tokenize("".join(current))))
            current = []
    if current:
        texts.append(_plain_text(tokenizer.tokenize("".join(current))))
    return texts


def _plain_text(tokens):
    return "".join(token.removeprefix("##") for token in tokens)


def _segments_text(tokenizer, ids, num_a):
    tokens = tokenizer.convert_ids_to_tokens(ids)
    return _plain_text(tokens[1 : num_a - 1]), _plain_text(tokens[num_a:-1])


@pytest.mark.parametrize("original_wwm_labels", [False, True])
def test_labels_are_the_original_characters_and_sop_order(
    news_file, reference_tokenizer, original_wwm_labels
):
    vocab = shared_data("vocab.txt")
    processor = cpd.BlockProcessor(
        make_config(vocab, dupe_factor=3, original_wwm_labels=original_wwm_labels)
    )
    documents = _doc_texts(reference_tokenizer, news_file)
    reader = cpd.InputReader([str(news_file)], one_document_per_line=False)
    labels, hash_labels, ordered_checks = collections.Counter(), 0, 0
    for block in cpd.iter_blocks(reader.documents(), 10_000):
        for instance in processor.block_instances(block, random.Random(block.index)):
            ids = list(instance.input_ids)
            for position, label in zip(
                instance.masked_positions, instance.masked_label_ids, strict=True
            ):
                token = reference_tokenizer.inv_vocab[label]
                if token.startswith("##") and word_spans_oracle.is_cjk_token(token[2:]):
                    hash_labels += 1
                    label = reference_tokenizer.vocab[token[2:]]
                ids[position] = label
            first, second = _segments_text(reference_tokenizer, ids, instance.num_segment_a_tokens)
            # Both segments are verbatim text of one document: the labels restore it.
            document = next(d for d in documents if first in d and second in d)
            labels[instance.is_swapped] += 1
            if len(first) >= 12 and len(second) >= 12 and document.count(first) == 1:
                ordered_checks += 1
                assert (document.find(first) > document.find(second)) == instance.is_swapped
    assert ordered_checks > 100
    assert 0.4 < labels[1] / sum(labels.values()) < 0.6
    if original_wwm_labels:
        assert hash_labels > 100  # brightmart's "##X" labels for non-initial characters
    else:
        assert hash_labels == 0


def test_single_sentence_documents_become_instances(tmp_path):
    vocab = shared_data("vocab.txt")
    text = shared_data("corpus/reviews.txt").read_text(encoding="utf-8")[:20_000]
    reviews = [line for line in text.splitlines() if line.strip()][:-1]
    path = tmp_path / "reviews.txt"
    path.write_text("\n".join(reviews) + "\n", encoding="utf-8")
    processor = cpd.BlockProcessor(make_config(vocab, one_document_per_line=True))
    reader = cpd.InputReader([str(path)], one_document_per_line=True)
    instances = [
        i
        for b in cpd.iter_blocks(reader.documents(), 100_000)
        for i in processor.block_instances(b, random.Random(b.index))
    ]
    assert processor.split_sentences("“走吧！”他说。然后呢?没有标点") == [
        "“走吧！”",
        "他说。",
        "然后呢?",
        "没有标点",
    ]
    assert processor.stats["documents"] == len(reviews)
    # The original drops every one-sentence document; here almost every review is used.
    assert len(instances) >= 0.9 * len(reviews)
    for instance in instances:
        num_a = instance.num_segment_a_tokens
        assert num_a >= 3 and len(instance.input_ids) > num_a + 1  # A and B both non-empty


# ----------------------------------------------------------------------------- determinism


def test_same_bytes_whatever_the_number_of_workers(tmp_path, news_file):
    vocab = shared_data("vocab.txt")
    config = make_config(vocab, dupe_factor=2, ngram=2)
    outputs = {}
    for workers in (1, 2):
        paths = cpd.output_paths(str(tmp_path / f"w{workers}.tfrecord"), 2)
        cpd.generate(config, [str(news_file)], paths, num_workers=workers, block_chars=3_000)
        outputs[workers] = [open(p, "rb").read() for p in paths]
    assert outputs[1] == outputs[2]
    assert all(len(data) > 10_000 for data in outputs[1])
    other_seed = tmp_path / "seed.tfrecord"
    cpd.generate(
        make_config(vocab, dupe_factor=2, ngram=2, random_seed=7),
        [str(news_file)],
        [str(other_seed)],
        num_workers=1,
        block_chars=3_000,
    )
    assert open(other_seed, "rb").read() != outputs[1][0] + outputs[1][1]


# ----------------------------------------------------------------------------- bad input


def test_invalid_utf8_bom_and_control_characters(tmp_path, reference_tokenizer):
    vocab = shared_data("vocab.txt")
    path = tmp_path / "bad.txt"
    path.write_bytes(
        "\ufeff北京欢迎你。今天天气很好。\n".encode()
        + b"\xff\xfe\xc3"
        + "我们去公园散步吧。".encode()
        + b"\n"
        + b"\x00\x01\x02\n"  # a line of control characters only: no tokens
        + b"\n\n"
        + "第二篇文档在这里。\n它有两句话。\n".encode()
    )
    output = tmp_path / "bad.tfrecord"
    summary = cpd.generate(make_config(vocab, dupe_factor=2), [str(path)], [str(output)])
    assert summary["replaced_bytes"] == 3
    assert summary["lines_with_replaced_bytes"] == [f"{path}:2"]
    assert summary["skipped_lines"] == 1 and summary["skipped_line_examples"] == [f"{path}:3"]
    assert summary["documents"] == 2 and summary["instances"] >= 2
    first_tokens = set()
    for example in read_examples([output]):
        first_tokens.update(reference_tokenizer.convert_ids_to_tokens(example["input_ids"][:3]))
    assert "\ufeff" not in first_tokens and "[UNK]" not in first_tokens


@pytest.mark.parametrize("content", [b"", b"   \n\n\t\n\xe3\x80\x80\n"])
def test_empty_or_whitespace_input_is_a_clear_error(tmp_path, content):
    vocab = shared_data("vocab.txt")
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    output = tmp_path / "empty.tfrecord"
    with pytest.raises(errors.AlbertError, match="empty or whitespace only"):
        cpd.generate(make_config(vocab), [str(path)], [str(output)])
    assert not output.exists()


def test_empty_file_among_good_ones_is_reported(tmp_path, news_file):
    vocab = shared_data("vocab.txt")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"\n \n")
    summary = cpd.generate(
        make_config(vocab), [str(empty), str(news_file)], [str(tmp_path / "out.tfrecord")]
    )
    assert summary["empty_input_files"] == [str(empty)] and summary["instances"] > 0


def test_file_lists_and_globs(tmp_path, news_file):
    for name in ("b.txt", "a.txt"):
        (tmp_path / name).write_text("你好。\n", encoding="utf-8")
    spec = f"{tmp_path}/*.txt,{news_file}"
    assert pretraining_data.expand_input_files(spec, "input_file") == [
        str(tmp_path / "a.txt"),
        str(tmp_path / "b.txt"),
        str(news_file),
    ]
    with pytest.raises(errors.AlbertError, match="no file matches"):
        pretraining_data.expand_input_files(f"{tmp_path}/*.nothing", "input_file")
    with pytest.raises(errors.AlbertError, match="file not found"):
        pretraining_data.expand_input_files(str(tmp_path / "missing.txt"), "input_file")
    assert cpd.output_paths("/tmp/x.tfrecord", 3) == [
        f"/tmp/x-0000{k}-of-00003.tfrecord" for k in range(3)
    ]


def test_command_line_error_is_one_line(tmp_path):
    vocab = shared_data("vocab.txt")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "create_pretraining_data.py"),
            f"--input_file={empty}",
            f"--output_file={tmp_path / 'o.tfrecord'}",
            f"--vocab_file={vocab}",
            "--num_workers=1",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: no text in ")
    assert "Traceback" not in result.stderr


def test_command_line_shards_and_a_summary_no_shard_glob_matches(tmp_path, news_file):
    vocab = shared_data("vocab.txt")
    output = tmp_path / "train.tfrecord"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "create_pretraining_data.py"),
            f"--input_file={news_file}",
            f"--output_file={output}",
            f"--vocab_file={vocab}",
            "--do_whole_word_mask",
            "--dupe_factor=1",
            "--num_workers=1",
            "--output_shards=3",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    shards = sorted(tmp_path.glob("train-*"))
    assert [p.name for p in shards] == [f"train-0000{k}-of-00003.tfrecord" for k in range(3)]
    summary = json.loads((tmp_path / "train.tfrecord.summary.json").read_text())
    assert summary["output_files"] == [str(p) for p in shards]
    assert sum(len(read_examples([p])) for p in shards) == summary["instances"] > 0


def test_rjieba_gives_jiebas_words_on_real_text(processor, news_file):
    """The default segmenter (jieba-rs) must cut exactly as the jieba package on what the
    generator feeds it: Chinese characters, a space per other token."""
    rjieba, jieba = (tokenization.word_segmenter(name) for name in ("rjieba", "jieba"))
    lines = news_file.read_text(encoding="utf-8").splitlines()
    for name in ("lcqmc_small/dev.txt", "lcqmc_small/test.txt"):
        for row in shared_data(name).read_text(encoding="utf-8").splitlines():
            lines += row.split("\t")[:2]
    texts = [processor.tokenize_line(line)[1] for line in lines if line.strip()]
    assert len(texts) > 14_000
    assert [rjieba(t) for t in texts] == [jieba(t) for t in texts]
    with pytest.raises(errors.AlbertError, match="unknown word segmenter 'thulac'"):
        tokenization.word_segmenter("thulac")
