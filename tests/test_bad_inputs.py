"""Bad inputs of issue 15 ("Nothing lost under faults"): each gives one clear line, a count or
a warning, never a traceback and never a silently wrong result.

create_pretraining_data.py: a 700,000-character line, a tiny --max_seq_length, a NUL byte,
random bytes, GBK and UTF-16 files, progress. Training scripts: vocab size against the config,
output paths under a regular file, learning rates, sequence room, a glob over the generator's
own output, a TFRecord corrupt in the middle. similarity.py: empty, emoji-only and very long
sentences. Exporters: the checkpoint they resolved.
"""

import glob
import json
import logging
import os
import random
import subprocess
import sys

import pytest
from absl import flags

import create_pretraining_data as cpd
import training
from errors import AlbertError
from tests import fault_fixtures as ff
from tests.conftest import REPO_ROOT, shared_data

NEWS = "corpus_sample/news_zh_1.txt"


def generator_config(**overrides):
    values = dict(vocab_file=str(shared_data("vocab.txt")), dupe_factor=1, max_seq_length=128)
    values.update(overrides)
    return cpd.GeneratorConfig(**values)


def generate(paths, output, **overrides):
    return cpd.generate(generator_config(**overrides), [str(p) for p in paths], [str(output)])


def accounted(summary):
    """Every input token of every round is kept, truncated or dropped."""
    rounds = summary["config"]["dupe_factor"]
    lost = summary["truncated_tokens"] + summary["dropped_tokens"]
    return summary["kept_tokens"] + lost == summary["input_tokens"] * rounds


def run_scripts(commands, tmp_path):
    """Run several scripts at once; [(return code, stdout, stderr)] in order."""
    processes = []
    for index, command in enumerate(commands):
        out, err = tmp_path / f"script{index}.out", tmp_path / f"script{index}.err"
        process = subprocess.Popen(
            [sys.executable, *command],
            cwd=REPO_ROOT,
            env=ff.ENV,
            stdout=open(out, "w"),
            stderr=open(err, "w"),
        )
        processes.append((process, out, err))
    results = []
    for process, out, err in processes:
        process.wait(timeout=600)
        results.append((process.returncode, out.read_text(), err.read_text()))
    return results


def last_line(text):
    return text.strip().splitlines()[-1]


# ----------------------------------------------------------------------------- generator


def test_a_700000_character_line_is_split_and_every_token_counted(tmp_path, monkeypatch, caplog):
    """Case 3: one line of 700,000 characters (real news text, line breaks removed)."""
    text = shared_data("corpus/misc_news_clue.txt").read_text(encoding="utf-8")[:900_000]
    line = "".join(text.split("\n"))[:700_000]
    path = tmp_path / "one_line.txt"
    path.write_text(line, encoding="utf-8")
    monkeypatch.setattr(cpd, "PROGRESS_SECONDS", 0.0)  # a progress line per block
    with caplog.at_level(logging.INFO, logger="absl"):
        summary = cpd.generate(
            generator_config(),
            [str(path)],
            [str(tmp_path / "out.tfrecord")],
            block_chars=100_000,
        )
    assert summary["lines_read_in_pieces"] == 1
    assert summary["documents_split_for_size"] >= 1
    assert summary["long_lines_split_at_sentence_ends"] > 0
    assert summary["sentences_cut_without_sentence_end"] > 0
    assert accounted(summary)
    # Before, the line was one instance per round: 125 of ~670,000 tokens kept.
    assert summary["input_tokens"] > 600_000 and summary["kept_token_share"] > 0.75
    assert summary["instances"] > 4000
    log = caplog.text
    assert f"{summary['truncated_tokens']:,} cut by truncation" in log
    progress = [r.getMessage() for r in caplog.records if "MB/s" in r.getMessage()]
    assert len(progress) >= 2 and all("ETA" in p for p in progress)  # case 20: one per block


def test_a_tiny_max_seq_length_keeps_the_tokens_and_a_lossy_run_warns(tmp_path, caplog):
    """Case 6: --max_seq_length=5 kept 1,065 of 11,008 tokens; a run that still loses more
    than a fifth of its tokens ends with a loud warning."""
    with caplog.at_level(logging.INFO, logger="absl"):
        tiny = generate(
            [shared_data(NEWS)],
            tmp_path / "5.tfrecord",
            max_seq_length=5,
            max_predictions_per_seq=2,
        )
    assert tiny["input_tokens"] == 11_008 and accounted(tiny)
    assert tiny["kept_token_share"] > 0.95 and "ONLY" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="absl"):
        lossy = generate([shared_data(NEWS)], tmp_path / "64.tfrecord", max_seq_length=64)
    assert accounted(lossy) and lossy["kept_token_share"] < cpd.MIN_KEPT_TOKEN_SHARE
    warning = next(r.getMessage() for r in caplog.records if "ONLY" in r.getMessage())
    assert f"ONLY {lossy['kept_tokens']:,} of 11,008 input tokens" in warning
    assert "--max_seq_length (now 64)" in warning
    written = json.loads((tmp_path / "64.tfrecord.summary.json").read_text())
    assert written["truncated_tokens"] == lossy["truncated_tokens"] > 0


def test_a_nul_byte_is_reported_as_such(tmp_path, caplog):
    """Case: a NUL byte in a text file is counted and named, not called invalid UTF-8."""
    path = tmp_path / "nul.txt"
    path.write_bytes("北京欢迎你。\n".encode() + b"\x00" + "今天天气很好。\n".encode())
    with caplog.at_level(logging.WARNING, logger="absl"):
        summary = generate([path], tmp_path / "nul.tfrecord")
    assert summary["nul_bytes"] == 1 and summary["lines_with_nul_bytes"] == [f"{path}:2"]
    assert summary["replaced_bytes"] == 0 and summary["instances"] > 0
    assert "1 NUL bytes" in caplog.text and "invalid UTF-8" not in caplog.text


def test_files_that_are_not_text_are_skipped_and_named(tmp_path):
    """Case: random bytes (and GBK, UTF-16) are reported instead of becoming instances."""
    noise = tmp_path / "random.bin"
    noise.write_bytes(random.Random(15).randbytes(200_000))
    with pytest.raises(AlbertError, match=r"or not UTF-8 text \(1 file\(s\) skipped\)"):
        generate([noise], tmp_path / "noise.tfrecord")
    assert not (tmp_path / "noise.tfrecord").exists()

    news = shared_data(NEWS)
    gbk, utf16 = tmp_path / "gbk.txt", tmp_path / "utf16.txt"
    gbk.write_bytes(news.read_text(encoding="utf-8").encode("gbk", errors="replace"))
    utf16.write_bytes(news.read_text(encoding="utf-8").encode("utf-16"))
    mixed = generate([noise, gbk, news, utf16], tmp_path / "mixed.tfrecord")
    alone = generate([news], tmp_path / "alone.tfrecord")
    skipped = {s["path"]: s["reason"] for s in mixed["skipped_files"]}
    assert list(skipped) == [str(noise), str(gbk), str(utf16)]
    assert all(r.startswith("not UTF-8 text: ") and "iconv" in r for r in skipped.values())
    assert "are NUL" in skipped[str(utf16)]
    assert (tmp_path / "mixed.tfrecord").read_bytes() == (tmp_path / "alone.tfrecord").read_bytes()
    assert mixed["instances"] == alone["instances"] > 0


# ----------------------------------------------------------------------------- training flags


@pytest.fixture(scope="module")
def classifier_data(tmp_path_factory):
    return ff.make_classifier_data(tmp_path_factory.mktemp("bad_classifier"))


@pytest.fixture(scope="module")
def pretraining_data_files(tmp_path_factory):
    return ff.make_pretraining_data(tmp_path_factory.mktemp("bad_pretraining"), num_examples=64)


def test_a_vocab_that_does_not_fit_the_config_is_one_line(classifier_data, tmp_path):
    """Case 4: vocab.txt larger or smaller than vocab_size, for both training scripts."""
    data_dir, config = classifier_data
    vocab_lines = shared_data("vocab.txt").read_text(encoding="utf-8").splitlines()
    smaller = tmp_path / "vocab_small.txt"
    smaller.write_text("\n".join(vocab_lines[:20_000]) + "\n", encoding="utf-8")
    larger_config = tmp_path / "config_small_vocab.json"
    larger_config.write_text(json.dumps(dict(ff.TINY_CLASSIFIER_CONFIG, vocab_size=21_000)))
    base = ff.classifier_flags((data_dir, config), tmp_path / "out", "--num_train_steps=2")
    with pytest.raises(AlbertError, match=r"vocab_small\.txt has 20000 entries but .*=21128"):
        ff.run_classifier_in_process([*base, f"--vocab_file={smaller}"])
    with pytest.raises(
        AlbertError, match=r"has 21128 entries but the config says vocab_size=21000"
    ):
        ff.run_classifier_in_process([*base, f"--bert_config_file={larger_config}"])
    assert not (tmp_path / "out").exists()  # refused before anything was written

    records, _ = ff.make_pretraining_data(tmp_path, num_examples=16)
    small_config = tmp_path / "pretrain_small_vocab.json"
    small_config.write_text(json.dumps(dict(ff.TINY_CLASSIFIER_CONFIG, vocab_size=8_000)))
    with pytest.raises(AlbertError, match=r"part-0\.tfrecord: record 0 has .* vocab_size is 8000"):
        ff.run_pretraining_in_process(
            ff.pretraining_flags(
                (records, str(small_config)), tmp_path / "pt", "--num_train_steps=2"
            )
        )


def blocked_path(tmp_path):
    """(a path under a regular file, the error's ending)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    return blocker / "out", f"{blocker} is a file, not a directory"


def test_an_output_dir_under_a_regular_file_is_one_line(
    classifier_data, pretraining_data_files, tmp_path
):
    """Case 5: --output_dir under a regular file, both training scripts."""
    inside, message = blocked_path(tmp_path)
    with pytest.raises(AlbertError, match=message):
        ff.run_pretraining_in_process(ff.pretraining_flags(pretraining_data_files, inside))
    with pytest.raises(AlbertError, match=message):
        ff.run_classifier_in_process(ff.classifier_flags(classifier_data, inside))


@pytest.mark.slow
def test_output_paths_under_a_regular_file_are_one_line_in_every_tool(classifier_data, tmp_path):
    """Case 5: --output_file / --export_dir under a regular file: generator and exporters."""
    inside, message = blocked_path(tmp_path)
    vocab, news = shared_data("vocab.txt"), shared_data(NEWS)
    _, config = classifier_data
    results = run_scripts(
        [
            [
                "create_pretraining_data.py",
                f"--input_file={news}",
                f"--output_file={inside}/train.tfrecord",
                f"--vocab_file={vocab}",
            ],
            [
                "export_savedmodel.py",
                f"--init_checkpoint={tmp_path}/missing.ckpt",
                f"--bert_config_file={config}",
                f"--export_dir={inside}",
            ],
            [
                "export_tflite.py",
                f"--init_checkpoint={tmp_path}/missing.ckpt",
                f"--bert_config_file={config}",
                f"--output_file={inside}/model.tflite",
            ],
        ],
        tmp_path,
    )
    for code, _, stderr in results:
        assert code == 2 and "Traceback" not in stderr, stderr[-2000:]
        assert last_line(stderr).startswith("error: --") and last_line(stderr).endswith(message)


def test_learning_rate_and_sequence_room_are_checked(classifier_data, tmp_path, caplog):
    """Case 6: --learning_rate=-1 is an error, 0 a warning; --max_seq_length=3 on a pair task."""
    base = ff.classifier_flags(classifier_data, tmp_path / "out", "--num_train_steps=2")
    with pytest.raises(AlbertError, match="--learning_rate must be positive, got -1"):
        ff.run_classifier_in_process([*base, "--learning_rate=-1"])
    flag_values = flags.FlagValues()
    training.define_training_flags(flag_values)
    flag_values(["test", f"--output_dir={tmp_path}", "--do_train", "--learning_rate=0"])
    with caplog.at_level(logging.WARNING, logger="absl"):
        training.check_training_flags(flag_values)
    assert "--learning_rate=0: training will not change the weights" in caplog.text
    with pytest.raises(AlbertError, match=r"--max_seq_length=3 leaves no room .* at least 5"):
        ff.run_classifier_in_process([*base, "--max_seq_length=3"])


# ----------------------------------------------------------------------------- pretraining input


def test_a_glob_over_the_generators_output_skips_its_summary(tmp_path, caplog):
    """Case 8: --input_file='out/pt.tfrecord*' also matches out/pt.tfrecord.summary.json."""
    out = tmp_path / "out"
    generate(
        [shared_data(NEWS)], out / "pt.tfrecord", max_seq_length=ff.L, max_predictions_per_seq=ff.P
    )
    assert (out / "pt.tfrecord.summary.json").exists()
    config = ff.pf.write_config(tmp_path / "config.json")
    with caplog.at_level(logging.INFO, logger="absl"):
        ff.run_pretraining_in_process(
            ff.pretraining_flags(
                (f"{out}/pt.tfrecord*", config), tmp_path / "run", "--num_train_steps=2"
            )
        )
    assert "matches 1 generator summary file(s), left out" in caplog.text
    assert "1 input file(s), e.g." in caplog.text
    assert (tmp_path / "run" / "model.ckpt-2.index").exists()


def test_a_tfrecord_corrupt_in_the_middle_is_named(tmp_path):
    """Case: a record corrupt in the middle of one of several files, near its start (found by
    the check of the first records) or further in (found during training): the error names
    the file, not only TensorFlow's "corrupted record at <offset>"."""
    input_glob, config = ff.make_pretraining_data(tmp_path, num_examples=512)
    good, other = sorted(glob.glob(input_glob))
    content = open(other, "rb").read()
    for name, offset in (("early", 1000), ("late", len(content) // 2)):  # records 2 and 128
        damaged = tmp_path / f"{name}.tfrecord"
        damaged.write_bytes(content[:offset] + b"\x07" * 8 + content[offset + 8 :])
        with pytest.raises(AlbertError) as error:
            ff.run_pretraining_in_process(
                ff.pretraining_flags(
                    (f"{good},{damaged}", config),
                    tmp_path / name,
                    "--num_train_steps=60",
                    "--iterations_per_loop=60",
                )
            )
        message = str(error.value)
        assert f"in {damaged} (corrupted record at " in message, message
        assert "damaged or truncated; regenerate it" in message and good not in message
        assert ("at step" in message) == (name == "late")


# ----------------------------------------------------------------------------- similarity, export


@pytest.fixture(scope="module")
def model_dir(classifier_data, tmp_path_factory):
    """A tiny fine-tuned model directory (max_seq_length 32)."""
    output_dir = tmp_path_factory.mktemp("bad_model") / "model"
    ff.run_classifier_in_process(
        ff.classifier_flags(classifier_data, output_dir, "--num_train_steps=2")
    )
    return output_dir


@pytest.mark.slow
def test_similarity_warns_about_unknown_and_truncated_pairs(model_dir, tmp_path):
    """Case 7: an empty sentence is an error; an emoji-only text (all [UNK]) and a 5,000-
    character sentence (truncated) get a warning per pair, from arguments and from a file."""
    long_text = shared_data(NEWS).read_text(encoding="utf-8").replace("\n", "")[:5000]
    pairs = [("😀😀😀", "我想买手机"), ("今天天气很好", long_text), ("我想买手机", "我要买个手机")]
    pairs_file = tmp_path / "pairs.tsv"
    pairs_file.write_text("".join(f"{a}\t{b}\t1\n" for a, b in pairs), encoding="utf-8")
    similarity = ["similarity.py", f"--model_dir={model_dir}"]
    results = run_scripts(
        [
            [*similarity, "我想买手机", " "],
            [*similarity, *[text for pair in pairs for text in pair]],
            [*similarity, f"--input_file={pairs_file}"],
        ],
        tmp_path,
    )
    (code, _, stderr) = results[0]
    assert code == 2 and last_line(stderr).startswith(
        "error: sentence 2 on the command line is empty"
    )
    expected = (("arguments 1-2", "arguments 3-4"), (f"{pairs_file}:1", f"{pairs_file}:2"))
    for (code, stdout, stderr), (first, second) in zip(results[1:], expected, strict=True):
        assert code == 0, stderr[-2000:]
        assert len(stdout.strip().splitlines()) >= 3
        warnings = [line for line in stderr.splitlines() if "pair " in line and ": " in line]
        assert any(
            f"pair {first} " in w and "most tokens of text_a are [UNK] (1 of 1)" in w
            for w in warnings
        )
        assert any(f"pair {second} " in w and "pair truncated to 32 tokens" in w for w in warnings)
        assert len([w for w in warnings if "[UNK]" in w or "truncated" in w]) == 2


@pytest.mark.slow
def test_exporters_name_the_checkpoint_they_resolved(model_dir, tmp_path):
    """Case: an exporter given a model directory says which checkpoint it used."""
    results = run_scripts(
        [
            [
                "export_savedmodel.py",
                f"--init_checkpoint={model_dir}",
                f"--export_dir={tmp_path}/sm",
            ],
            [
                "export_tflite.py",
                f"--init_checkpoint={model_dir}",
                f"--output_file={tmp_path}/m.tflite",
                "--head=classifier",
                f"--max_seq_length={ff.L}",
            ],
        ],
        tmp_path,
    )
    for code, stdout, stderr in results:
        assert code == 0, stderr[-2000:]
        summary = json.loads(stdout.strip().splitlines()[-1])
        assert summary["checkpoint"] == os.path.join(model_dir, "model.ckpt-best")
