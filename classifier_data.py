"""Datasets for run_classifier.py: task readers, feature conversion and batching.

Every task is a `DataProcessor` (the BERT/albert_zh name) that turns the files of one split
into `InputExample`s. Unlike the original, reading never loses a real example and never drops
a row silently:

  * a first line is treated as a header only when its label field *is* a header word
    ("label", "标签", ...); the original always skipped line 1 of the LCQMC files, losing
    one real pair per split;
  * malformed rows (wrong column count, unknown label, empty text, invalid UTF-8, bad JSON)
    are counted per reason and the first few are reported as `file:line`; `strict=True`
    turns the first one into an `errors.AlbertError`;
  * a UTF-8 byte-order mark and CRLF line ends are accepted;
  * a test file may be unlabelled (its rows lack the label column, as in BQ Corpus's
    test.tsv); such examples have `label=None` and are predicted but not scored.

Tasks (the `task_name` flag): lcqmc (alias lcqmc_pair), bq_corpus, paws_x, oppo (the same
`text_a<TAB>text_b<TAB>label` files), chnsenticorp (`label<TAB>text_a` with a header),
thucnews (`title<TAB>label_id`, label names in class.txt), ocnli (CLUE JSON lines; "-" means
no gold label: skipped and counted), and `tsv`, a generic task documented on
`GenericTsvProcessor`.

Batching (`make_batches`, `training_batch_stream`, `make_dataset`): by default examples are padded
only to the longest one in their batch, and training batches are formed from examples of
similar length (length bucketing) so that little compute is spent on padding; `fixed_length`
pads everything to `max_seq_length` (static shapes, needed on TPU).
"""

import collections
import dataclasses
import itertools
import json
import os

import numpy as np

import errors

# Dynamic padding pads each batch to a multiple of this (few distinct shapes to trace).
PAD_MULTIPLE = 16
# A header line is recognised by its label field being one of these words.
HEADER_LABEL_WORDS = frozenset({"label", "labels", "gold_label", "标签", "类别", "y"})
# How many malformed rows are quoted (file:line) in a report.
MAX_QUOTED_PROBLEMS = 5


@dataclasses.dataclass
class InputExample:
    """One example: `text_b` is None for single-text tasks, `label` None when unlabelled."""

    guid: str
    text_a: str
    text_b: str | None
    label: str | None
    source: str = ""  # "file:line", for messages


class ReadReport:
    """What reading one file kept, skipped and found malformed (with file:line samples)."""

    def __init__(self, path, strict=False):
        self.path = path
        self.strict = strict
        self.num_examples = 0
        self.num_unlabelled = 0
        self.skipped = collections.Counter()  # deliberate skips: header, blank, no gold label
        self.malformed = collections.Counter()  # reason -> count
        self.quoted = []  # "file:line: reason: text" for the first few malformed rows

    @property
    def num_malformed(self):
        return sum(self.malformed.values())

    def skip(self, reason):
        self.skipped[reason] += 1

    def bad_row(self, line_number, reason, text):
        """Record a malformed row; raise AlbertError instead when reading strictly."""
        where = f"{self.path}:{line_number}"
        snippet = text if len(text) <= 60 else text[:57] + "..."
        if self.strict:
            raise errors.AlbertError(
                f"{where}: malformed row ({reason}): {snippet!r} "
                "(fix the row, or drop --strict to skip and count such rows)"
            )
        self.malformed[reason] += 1
        if len(self.quoted) < MAX_QUOTED_PROBLEMS:
            self.quoted.append(f"{where}: {reason}: {snippet!r}")

    def summary(self):
        """A one-paragraph description, e.g. for the log."""
        text = f"{self.path}: {self.num_examples} examples"
        if self.num_unlabelled:
            text += f" ({self.num_unlabelled} unlabelled)"
        if self.skipped:
            text += "; skipped " + ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items()))
        if self.malformed:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.malformed.items()))
            text += f"; {self.num_malformed} malformed rows ({reasons}), first: " + " | ".join(
                self.quoted
            )
        return text


def read_lines(path):
    """Yield (line_number, text or None) for each line of `path`; None means invalid UTF-8.

    A BOM is removed and CR/CRLF line ends are accepted. Lines are decoded one by one so that
    a single bad byte costs one row, not the file.
    """
    if not os.path.isfile(path):
        raise errors.AlbertError(f"data file not found: {path} (check --data_dir / the file flags)")
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for index, raw in enumerate(data.splitlines()):
        try:
            yield index + 1, raw.decode("utf-8")
        except UnicodeDecodeError:
            yield index + 1, None


def data_rows(path, report):
    """Yield (line_number, text) of the non-blank, decodable lines of `path`; lines with
    invalid UTF-8 are reported as bad rows and blank lines counted as skipped."""
    for line_number, text in read_lines(path):
        if text is None:
            report.bad_row(line_number, "invalid UTF-8", "<undecodable bytes>")
        elif not text.strip():
            report.skip("blank lines")
        else:
            yield line_number, text


# ----------------------------------------------------------------------------- processors


class DataProcessor:
    """Base class: a task's label list, its file names and how one file is parsed."""

    # Candidate file names for each split, first existing wins (override with the file flags).
    file_names = {"train": ("train.tsv",), "dev": ("dev.tsv",), "test": ("test.tsv",)}

    def __init__(self, strict=False):
        self.strict = strict
        self.reports = {}  # split -> ReadReport of the last read

    def get_labels(self):
        raise NotImplementedError

    def label_names(self):
        """Human-readable names of `get_labels()` (the labels themselves by default)."""
        return list(self.get_labels())

    def is_pair_task(self):
        """Whether examples have a text_b (so they need [CLS] a [SEP] b [SEP])."""
        columns = getattr(self, "columns", None)
        return columns is None or "text_b" in columns

    def split_path(self, data_dir, split):
        """The file for `split` in `data_dir`: the first candidate name that exists."""
        candidates = self.file_names[split]
        for name in candidates:
            path = os.path.join(data_dir, name)
            if os.path.isfile(path):
                return path
        raise errors.AlbertError(
            f"no {split} file in {data_dir} (looked for {', '.join(candidates)}; "
            f"pass --{split}_file to name it)"
        )

    def get_examples(self, path, split):
        """Read the examples of one split's file; the ReadReport goes to self.reports[split]."""
        report = ReadReport(path, strict=self.strict)
        examples = self._read(path, split, report)
        report.num_examples = len(examples)
        report.num_unlabelled = sum(1 for e in examples if e.label is None)
        self.reports[split] = report
        return examples

    def get_train_examples(self, data_dir):
        return self.get_examples(self.split_path(data_dir, "train"), "train")

    def get_dev_examples(self, data_dir):
        return self.get_examples(self.split_path(data_dir, "dev"), "dev")

    def get_test_examples(self, data_dir):
        return self.get_examples(self.split_path(data_dir, "test"), "test")

    def _read(self, path, split, report):
        raise NotImplementedError


class TsvProcessor(DataProcessor):
    """Tab-separated rows with a fixed column order, e.g. ("text_a", "text_b", "label").

    Quotes are plain characters (the original read with quotechar=None). In the test split a
    row without its label column is an unlabelled example.
    """

    columns = ("text_a", "text_b", "label")

    def _read(self, path, split, report):
        labels = set(self.get_labels())
        unlabelled_columns = tuple(c for c in self.columns if c != "label")
        examples = []
        for line_number, text in data_rows(path, report):
            fields = text.split("\t")
            if len(fields) == len(self.columns):
                row = dict(zip(self.columns, fields, strict=True))
            elif split == "test" and len(fields) == len(unlabelled_columns):
                row = dict(zip(unlabelled_columns, fields, strict=True))
                row["label"] = None
            else:
                report.bad_row(
                    line_number, f"{len(fields)} columns, expected {len(self.columns)}", text
                )
                continue
            label = None if row["label"] is None else row["label"].strip()
            if label is not None and label not in labels:
                if line_number == 1 and label.lower() in HEADER_LABEL_WORDS:
                    report.skip("header line")
                else:
                    report.bad_row(line_number, f"unknown label {label!r}", text)
                continue
            example = self._make_example(path, line_number, row, label, report, text)
            if example is not None:
                examples.append(example)
        return examples

    def _make_example(self, path, line_number, row, label, report, text):
        """Build an InputExample from a parsed row, or report it if a text is empty."""
        text_a = row["text_a"].strip()
        text_b = row["text_b"].strip() if "text_b" in row else None
        if not text_a or (text_b is not None and not text_b):
            report.bad_row(line_number, "empty text", text)
            return None
        return InputExample(
            guid=f"{os.path.basename(path)}-{line_number}",
            text_a=text_a,
            text_b=text_b,
            label=label,
            source=f"{path}:{line_number}",
        )


class LcqmcProcessor(TsvProcessor):
    """LCQMC: `text_a<TAB>text_b<TAB>label` in train.txt / dev.txt / test.txt, no header."""

    file_names = {"train": ("train.txt",), "dev": ("dev.txt",), "test": ("test.txt",)}

    def get_labels(self):
        return ["0", "1"]

    def label_names(self):
        return ["different", "same"]


class PairTsvProcessor(LcqmcProcessor):
    """BQ Corpus, PAWS-X (zh) and OPPO: LCQMC's columns in train.tsv / dev.tsv / test.tsv."""

    file_names = DataProcessor.file_names


class ChnSentiCorpProcessor(TsvProcessor):
    """ChnSentiCorp: `label<TAB>text_a` with a `label<TAB>text_a` header; 0 negative, 1 positive."""

    columns = ("label", "text_a")

    def get_labels(self):
        return ["0", "1"]

    def label_names(self):
        return ["negative", "positive"]


class ThucNewsProcessor(TsvProcessor):
    """THUCNews headlines: `title<TAB>label_id`; class.txt (next to the data) names the ids.

    The label ids are "0".."N-1" for the N lines of class.txt (10 for THUCNews).
    """

    columns = ("text_a", "label")
    file_names = {"train": ("train.txt",), "dev": ("dev.txt",), "test": ("test.txt",)}

    def __init__(self, strict=False, data_dir=None):
        super().__init__(strict)
        self._names = None
        if data_dir is not None:
            self.load_class_names(data_dir)

    def load_class_names(self, data_dir):
        path = os.path.join(data_dir, "class.txt")
        if not os.path.isfile(path):
            raise errors.AlbertError(
                f"thucnews needs {path} (one class name per line, line i = label id i)"
            )
        self._names = [text.strip() for _, text in read_lines(path) if text and text.strip()]

    def get_labels(self):
        if self._names is None:
            raise errors.AlbertError("thucnews: class.txt not loaded (pass data_dir)")
        return [str(i) for i in range(len(self._names))]

    def label_names(self):
        self.get_labels()
        return list(self._names)


class OcnliProcessor(DataProcessor):
    """OCNLI (CLUE): JSON lines with sentence1, sentence2 and label.

    Labels are entailment / neutral / contradiction. A label "-" means the annotators did
    not agree (no gold label): such rows are skipped and counted as "no gold label", as in
    the CLUE evaluation. A test row without "label" is unlabelled.
    """

    file_names = {
        "train": ("train.json", "train.50k.json", "train.10k.json", "train.3k.json"),
        "dev": ("dev.json",),
        "test": ("test.json",),
    }

    def get_labels(self):
        return ["entailment", "neutral", "contradiction"]

    def _read(self, path, split, report):
        labels = set(self.get_labels())
        examples = []
        for line_number, text in data_rows(path, report):
            try:
                row = json.loads(text)
                text_a = str(row["sentence1"]).strip()
                text_b = str(row["sentence2"]).strip()
            except (ValueError, KeyError, TypeError):
                report.bad_row(line_number, "not a JSON object with sentence1/sentence2", text)
                continue
            label = row.get("label")
            if label == "-":
                report.skip("no gold label ('-')")
                continue
            if label is None and split != "test":
                report.bad_row(line_number, "missing label", text)
                continue
            if label is not None and label not in labels:
                report.bad_row(line_number, f"unknown label {label!r}", text)
                continue
            if not text_a or not text_b:
                report.bad_row(line_number, "empty text", text)
                continue
            examples.append(
                InputExample(
                    guid=f"{os.path.basename(path)}-{line_number}",
                    text_a=text_a,
                    text_b=text_b,
                    label=label,
                    source=f"{path}:{line_number}",
                )
            )
        return examples


class GenericTsvProcessor(TsvProcessor):
    """The generic task `tsv`: your own data in train.tsv / dev.tsv / test.tsv.

    Each row is `text<TAB>label` (single text) or `text_a<TAB>text_b<TAB>label` (pair); the
    first row of the train file decides which, and every row must then have that many
    columns (the test file may leave out the label column). A first line whose last field
    is "label" is a header. The label set is `labels` if given (the --labels flag), else the
    sorted set of labels in the train file.
    """

    def __init__(self, strict=False, labels=None, data_dir=None, train_file=None):
        super().__init__(strict)
        self._labels = list(labels) if labels else None
        self.columns = None
        path = train_file or (os.path.join(data_dir, "train.tsv") if data_dir is not None else None)
        if path is not None and os.path.isfile(path):
            self._inspect_train_file(path)

    def _inspect_train_file(self, path):
        """Decide the column layout and (unless given) the label set from the train file."""
        rows = [t.split("\t") for _, t in read_lines(path) if t is not None and t.strip()]
        if rows and rows[0][-1].strip().lower() in HEADER_LABEL_WORDS:
            rows = rows[1:]
        if not rows:
            raise errors.AlbertError(f"{path}: no data rows")
        width = len(rows[0])
        if width not in (2, 3):
            raise errors.AlbertError(
                f"{path}:1: {width} columns; the tsv task expects text<TAB>label or "
                "text_a<TAB>text_b<TAB>label"
            )
        self.columns = ("text_a", "label") if width == 2 else ("text_a", "text_b", "label")
        if self._labels is None:
            self._labels = sorted({r[-1].strip() for r in rows if len(r) == width})

    def get_labels(self):
        if not self._labels:
            raise errors.AlbertError(
                "task tsv: no label set (pass --labels=a,b,... or provide train.tsv)"
            )
        return self._labels

    def _read(self, path, split, report):
        if self.columns is None:
            self._inspect_train_file(path)
        return super()._read(path, split, report)


PROCESSORS = {
    "lcqmc": LcqmcProcessor,
    "lcqmc_pair": LcqmcProcessor,
    "bq_corpus": PairTsvProcessor,
    "paws_x": PairTsvProcessor,
    "oppo": PairTsvProcessor,
    "chnsenticorp": ChnSentiCorpProcessor,
    "thucnews": ThucNewsProcessor,
    "ocnli": OcnliProcessor,
    "tsv": GenericTsvProcessor,
}


def get_processor(task_name, data_dir=None, strict=False, labels=None, train_file=None):
    """The processor for `task_name` (case-insensitive); AlbertError for an unknown task."""
    name = task_name.lower()
    if name not in PROCESSORS:
        raise errors.AlbertError(
            f"unknown task_name {task_name!r}; choose one of {', '.join(sorted(PROCESSORS))}"
        )
    if name == "thucnews":
        return ThucNewsProcessor(strict=strict, data_dir=data_dir)
    if name == "tsv":
        return GenericTsvProcessor(
            strict=strict, labels=labels, data_dir=data_dir, train_file=train_file
        )
    return PROCESSORS[name](strict=strict)


# ----------------------------------------------------------------------------- features


@dataclasses.dataclass
class Features:
    """Unpadded token ids of a list of examples (padding happens per batch).

    `make_dataset` pads the TOKEN_COLUMNS (one value per token) and gathers the
    EXAMPLE_COLUMNS (one value per example); ner_data.NerFeatures declares its own.
    """

    TOKEN_COLUMNS = ("input_ids", "segment_ids")
    EXAMPLE_COLUMNS = ("label_ids",)

    input_ids: list  # of np.int32 arrays, [CLS] a [SEP] (b [SEP])
    segment_ids: list  # of np.int32 arrays
    label_ids: np.ndarray  # int32 [N]; -1 for an unlabelled example
    lengths: np.ndarray  # int32 [N]

    def __len__(self):
        return len(self.label_ids)


def convert_examples_to_features(examples, label_list, max_seq_length, tokenizer):
    """Tokenize examples with `tokenizer.encode_pair` (truncating pairs as the original)."""
    label_map = {label: i for i, label in enumerate(label_list)}
    input_ids, segment_ids, label_ids = [], [], []
    for example in examples:
        encoded = tokenizer.encode_pair(example.text_a, example.text_b, max_seq_length)
        input_ids.append(np.asarray(encoded["input_ids"], np.int32))
        segment_ids.append(np.asarray(encoded["segment_ids"], np.int32))
        label_ids.append(-1 if example.label is None else label_map[example.label])
    return Features(
        input_ids=input_ids,
        segment_ids=segment_ids,
        label_ids=np.asarray(label_ids, np.int32),
        lengths=np.asarray([len(x) for x in input_ids], np.int32),
    )


# ----------------------------------------------------------------------------- batching


def make_batches(lengths, batch_size, shuffle, seed=0, bucket=True, bucket_window=50):
    """Split example indices into batches (a list of index arrays).

    shuffle: shuffle examples (and batch order) with `seed`; evaluation passes False.
    bucket: sort by length inside windows of `bucket_window` batches, so each batch holds
      examples of similar length and needs little padding; the batches are then shuffled
      so that training still sees lengths in random order. Without shuffling, bucketing
      sorts the whole set (predictions are mapped back by index).
    """
    lengths = np.asarray(lengths)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths)) if shuffle else np.arange(len(lengths))
    if bucket:
        window = batch_size * bucket_window if shuffle else len(order)
        chunks = []
        for start in range(0, len(order), max(window, 1)):
            chunk = order[start : start + window]
            chunks.append(chunk[np.argsort(lengths[chunk], kind="stable")])
        order = np.concatenate(chunks) if chunks else order
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle and bucket:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def padded_length(batch_max_length, max_seq_length, fixed_length, multiple=PAD_MULTIPLE):
    """The padded sequence length of a batch.

    Dynamic padding rounds up to a multiple of `multiple` so that tf.function / XLA see only
    a handful of distinct shapes; fixed padding always uses max_seq_length.
    """
    if fixed_length:
        return max_seq_length
    rounded = -(-int(batch_max_length) // multiple) * multiple
    return int(min(max(rounded, 1), max_seq_length))


def batches_per_epoch(num_examples, batch_size, drop_remainder=False):
    """Batches in one pass: the last partial batch counts unless it is dropped."""
    if drop_remainder:
        return num_examples // batch_size
    return -(-num_examples // batch_size)


def training_batch_stream(
    lengths, batch_size, seed, start_batch=0, bucket=True, drop_remainder=False
):
    """Endless training batches (index arrays), epoch after epoch, from batch `start_batch`.

    Epoch e is shuffled with seed + e, so the stream is a pure function of (seed, position):
    a run resumed at batch k reads exactly what the uninterrupted run read from batch k on.
    `drop_remainder` leaves out each epoch's partial batch (static batch shapes).
    """
    per_epoch = batches_per_epoch(len(lengths), batch_size, drop_remainder)
    if per_epoch == 0:
        raise errors.AlbertError(
            f"{len(lengths)} training examples cannot fill one batch of {batch_size}"
        )
    epoch, skip = divmod(start_batch, per_epoch)
    while True:
        batches = make_batches(lengths, batch_size, shuffle=True, seed=seed + epoch, bucket=bucket)
        if drop_remainder:
            batches = [b for b in batches if len(b) == batch_size]
        yield from batches[skip:]
        skip = 0
        epoch += 1


def make_train_dataset_fn(
    features,
    global_batch_size,
    num_replicas,
    max_seq_length,
    fixed_length,
    data_seed,
    num_train_steps,
):
    """dataset_fn(input_context, start_step) for training.Trainer.train: per-replica batches.

    One stream of batches: epoch e is shuffled with `data_seed` + e, and step s reads batches
    s * num_replicas ... (s + 1) * num_replicas - 1 of it, so training (re)started at any step
    reads what an uninterrupted run would. The dataset ends after step `num_train_steps`.
    With several input pipelines, pipeline p takes every p-th batch of the stream. Fixed
    padding also drops partial batches, so that every shape is static (TPU). Any features
    `make_dataset` pads will do (classification examples, NER windows).
    """

    def dataset_fn(input_context=None, start_step=0):
        pipelines = input_context.num_input_pipelines if input_context else 1
        pipeline_id = input_context.input_pipeline_id if input_context else 0
        per_replica = global_batch_size // num_replicas
        start_batch = start_step * num_replicas
        stream = training_batch_stream(
            features.lengths,
            per_replica,
            data_seed,
            start_batch=start_batch,
            bucket=not fixed_length,
            drop_remainder=fixed_length,
        )
        count = max(0, num_train_steps - start_step) * num_replicas
        batches = [
            indices
            for j, indices in enumerate(itertools.islice(stream, count), start=start_batch)
            if j % pipelines == pipeline_id
        ]
        return make_dataset(
            features,
            batches,
            max_seq_length,
            fixed_length=fixed_length,
            batch_size=per_replica if fixed_length else None,
        )

    return dataset_fn


@dataclasses.dataclass
class TrainingInput:
    """The training data of a fine-tuning run, as training.fine_tune reads it: how many
    batches an epoch has, and the dataset_fn of the stream that ends after a given step."""

    features: object  # Features (classification) or ner_data.NerFeatures
    global_batch_size: int
    num_replicas: int
    max_seq_length: int
    fixed_length: bool
    seed: int

    def __len__(self):
        return len(self.features)

    def batches_per_epoch(self, per_replica_batch):
        return batches_per_epoch(len(self.features), per_replica_batch, self.fixed_length)

    def dataset_fn(self, num_train_steps):
        return make_train_dataset_fn(
            self.features,
            self.global_batch_size,
            self.num_replicas,
            self.max_seq_length,
            self.fixed_length,
            self.seed,
            num_train_steps,
        )


def make_dataset(features, batches, max_seq_length, fixed_length=False, batch_size=None):
    """A tf.data.Dataset of padded batches, one per index array in `batches`.

    Each batch holds `input_mask` plus every column the features declare: the per-token
    `TOKEN_COLUMNS` padded with 0 to the batch's length ([batch, seq]), the per-example
    `EXAMPLE_COLUMNS` gathered ([batch]). So classification features and NER windows
    (ner_data.NerFeatures: label_ids and label_mask per token) share one padding code.

    The pipeline is pure TensorFlow: the rows live in ragged tensors and each batch is a
    gather + pad, so no Python (and no GIL) is involved while training reads it, and tf.data
    pads batches in parallel. Evaluation and prediction read it too (inference.predict).
    seq is None (dynamic padding: the longest row rounded up like `padded_length`) or
    max_seq_length (fixed); batch is None unless `batch_size` is given (a static batch, for
    TPUs).
    """
    import tensorflow as tf

    def ragged(rows, row_lengths):
        flat = np.concatenate(rows).astype(np.int32) if len(rows) else np.zeros([0], np.int32)
        return tf.RaggedTensor.from_row_lengths(flat, np.asarray(row_lengths, np.int64))

    token_columns = {
        name: ragged(getattr(features, name), features.lengths) for name in features.TOKEN_COLUMNS
    }
    example_columns = {
        name: tf.constant(getattr(features, name), tf.int32) for name in features.EXAMPLE_COLUMNS
    }
    lengths = tf.constant(features.lengths, tf.int32)
    index_batches = ragged(batches, [len(b) for b in batches])
    seq_dim = max_seq_length if fixed_length else None

    def pad(indices):
        batch_lengths = tf.gather(lengths, indices)
        if fixed_length:
            length = tf.constant(max_seq_length, tf.int32)
        else:  # as padded_length(): round up to a multiple of PAD_MULTIPLE, at most max_seq_length
            rounded = -(-tf.reduce_max(batch_lengths) // PAD_MULTIPLE) * PAD_MULTIPLE
            length = tf.clip_by_value(rounded, 1, max_seq_length)
        batch = {"input_mask": tf.sequence_mask(batch_lengths, length, tf.int32)}
        for name, rows in token_columns.items():
            values = tf.gather(rows, indices).to_tensor()
            batch[name] = tf.pad(values, [[0, 0], [0, length - tf.shape(values)[1]]])
        for value in batch.values():
            value.set_shape([batch_size, seq_dim])
        for name, values in example_columns.items():
            batch[name] = tf.gather(values, indices)
            batch[name].set_shape([batch_size])
        return batch

    dataset = tf.data.Dataset.from_tensor_slices(index_batches)
    return dataset.map(pad, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)
