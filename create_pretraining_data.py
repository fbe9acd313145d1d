"""Create ALBERT pretraining TFRecords from raw Chinese text: whole-word masking + SOP.

Same flags and output schema as brightmart/albert_zh `create_pretraining_data.py` (docs/formats.md,
"Pretraining TFRecords" and "Pretraining data generation"), so files from either tool feed either trainer. What is different, and why:

* Streaming and parallel. The input is read as a stream of documents and cut into blocks of
  about `--block_chars` characters (at document boundaries). Worker processes turn blocks
  into serialized `tf.train.Example`s and the parent writes them in block order. At most
  2 x num_workers blocks are in flight, so memory stays flat however large the corpus is
  (the original held every document and every instance in RAM).
* Deterministic. Block b draws all its randomness from `Random("<random_seed>:<b>")`, and
  block boundaries depend only on the input and `--block_chars`, so the same input, seed and
  block size give byte-identical files whatever `--num_workers` is.
* Local shuffling. The original shuffled all instances globally (the reason for its RAM use).
  Here the instances of one block, all `dupe_factor` rounds together, are shuffled within the
  block and dealt round-robin to the output files; the trainer's file shuffle, interleave
  and shuffle buffer mix across blocks. Write several `--output_shards` for better mixing.
* jieba's real word boundaries, any word length. The original grouped only words of up to
  3 characters, by set membership, and ran jieba `dupe_factor` times per sentence. Here
  jieba runs once per sentence per run, and each jieba word is one whole-word masking unit.
  By default the words come from rjieba (jieba-rs: jieba's algorithm and dictionary in Rust,
  about 12x faster, the same words on all but 50 of the 821,823 lines of the shared corpus);
  `--segmenter=jieba` uses the Python package.
* Labels are the ids of the characters that were there. The original labelled non-initial
  characters of a word with `##X` ids that the input never contains (brightmart/roberta_zh
  #84). `--original_wwm_labels` restores those `##X` labels for continuing a brightmart
  checkpoint that learned them.
* Random replacements (the 10% case) are drawn from real tokens only: never [PAD], [UNK],
  [CLS], [SEP], [MASK], [unused*] or the `##X` Chinese entries the input never contains.
* Sentence order. Chunks of two or more sentences split at a random sentence boundary (as
  the original). A chunk of one sentence (a long sentence, or the last one of a document) is
  split at a random jieba word boundary instead of being merged into the next chunk or
  silently dropped; a chunk of a single word is dropped and counted. Then A and B are
  swapped with p = 0.5 (next_sentence_labels = 1 means swapped).
* `--ngram` > 1 gives Google ALBERT's n-gram masking over whole words (n drawn with
  p proportional to 1/n), but seeded, so it is reproducible.

Usage:
  python create_pretraining_data.py --input_file=../shared/data/corpus/*.txt \
      --output_file=/tmp/albert_pretrain.tfrecord --vocab_file=../shared/data/vocab.txt \
      --do_whole_word_mask --max_seq_length=128 --max_predictions_per_seq=20 \
      --dupe_factor=10 --num_workers=2
"""

import codecs
import collections
import dataclasses
import json
import multiprocessing
import os
import random
import re
import struct
import time

from absl import flags, logging

import errors
import pretraining_data
import tokenization

FLAGS = flags.FLAGS

CLS, SEP, MASK = "[CLS]", "[SEP]", "[MASK]"

# Documents longer than this are cut into consecutive pieces, and lines longer than this
# are read in pieces, so that a file without blank lines or without any line break cannot
# break the flat-memory promise.
MAX_DOCUMENT_CHARS = 500_000
LINE_PIECE_BYTES = 256 * 1024

# A file whose first SNIFF_BYTES bytes are this share or more invalid UTF-8 or NUL bytes is
# not text (see not_text_reason).
SNIFF_BYTES = 64 * 1024
NOT_TEXT_SHARE = 0.1

PROGRESS_SECONDS = 10.0  # a progress line (MB/s, instances, ETA) at most this often

# A run whose instances hold less than this share of the input tokens ends with a loud
# warning (every run logs the share). The original algorithm itself loses 8-14% at
# max_seq_length 128 on the shared corpora: a chunk's last sentence overshoots the length
# and is truncated; far less than 80% means lines or max_seq_length are a poor fit.
MIN_KEPT_TOKEN_SHARE = 0.8

# A sentence end: 。！？!? and the closing quotes or brackets after it. Sentences for
# --one_document_per_line and for lines too long for one instance are text up to one.
_SENTENCE_END = re.compile(r"[。！？!?]+[”’」』）)\"']*")
_SENTENCE = re.compile(f".+?(?:{_SENTENCE_END.pattern}|$)")

# BERT pads exactly the CJK code points with spaces, so each is a token boundary.
_CJK_CLASS = tokenization.CJK_CHAR_CLASS
# A line splits into single CJK characters and runs of other non-space characters; both
# are token boundaries for BERT's BasicTokenizer, so tokenizing the pieces one by one gives
# exactly the tokens of the whole line (tests/test_create_pretraining_data.py checks this).
_PIECES = re.compile(f"[{_CJK_CLASS}]|[^{_CJK_CLASS} ]+")
_CHINESE_TEXT = re.compile(f"[{_CJK_CLASS}]+")
# In word-start flags (one byte per token), a word is any flag followed by 0 flags.
_WORD_UNIT = re.compile(rb".\x00*", re.DOTALL)


def _is_chinese_text(text):
    """Whether `text` is non-empty and made of CJK ideographs only."""
    return _CHINESE_TEXT.fullmatch(text) is not None


# ----------------------------------------------------------------------------- input


@dataclasses.dataclass
class Document:
    """Consecutive non-blank lines of one file (or pieces of a long line), with the 1-based
    line number of each, for messages."""

    path: str
    line_numbers: list
    lines: list


@dataclasses.dataclass
class Block:
    index: int
    documents: list
    num_bytes: int


def not_text_reason(path):
    """Why `path` is not UTF-8 text, or None when it looks like it.

    A file whose first SNIFF_BYTES bytes are NOT_TEXT_SHARE or more invalid UTF-8 or NUL
    bytes is a binary file or text in another encoding (GBK, UTF-16): its "text" would be
    replacement characters and random symbols, so it is skipped rather than trained on.
    """
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if not head:
        return None
    invalid = len(head) - len(head.decode("utf-8", errors="ignore").encode("utf-8"))
    nuls = head.count(b"\x00")
    if max(invalid, nuls) < NOT_TEXT_SHARE * len(head):
        return None
    return (
        f"not UTF-8 text: {invalid / len(head):.0%} of its first {len(head):,} bytes are "
        f"invalid UTF-8 and {nuls / len(head):.0%} are NUL (a binary file, or text in another "
        "encoding: convert it first, e.g. iconv -f gbk -t utf-8 or iconv -f utf-16 -t utf-8)"
    )


def _last_sentence_end(text):
    """The index just after the last sentence end in `text` (0 if it has none)."""
    end = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
    return end


class InputReader:
    """Streams documents out of text files, counting what had to be repaired or skipped.

    Memory stays flat whatever the input looks like: a line is read at most LINE_PIECE_BYTES
    at a time and a document is cut every MAX_DOCUMENT_CHARS characters. A file that is not
    UTF-8 text (`not_text_reason`) is skipped and reported.
    """

    def __init__(self, paths, one_document_per_line):
        self.paths = paths
        self.one_document_per_line = one_document_per_line
        self.replaced_bytes = 0
        self.bad_byte_lines = []  # "path:line" of the first few lines with invalid UTF-8
        self.nul_bytes = 0
        self.nul_byte_lines = []  # "path:line" of the first few lines with NUL bytes
        self.empty_files = []
        self.skipped_files = []  # {"path", "reason"} of the files that are not text
        self.skipped_bytes = 0
        self.split_documents = 0
        self.long_lines = 0  # lines longer than LINE_PIECE_BYTES, read in pieces
        codecs.register_error("albert_count_replace", self._count_and_replace)

    def _count_and_replace(self, error):
        self.replaced_bytes += error.end - error.start
        return "\ufffd", error.end

    @staticmethod
    def _note(places, place):
        if len(places) < 5 and place not in places[-1:]:
            places.append(place)

    def _decode(self, decoder, raw, final, path, line_number):
        """Decode one piece of a line, counting invalid UTF-8 and NUL bytes (which the
        tokenizer drops: a NUL usually means UTF-16 text or a binary file)."""
        before = self.replaced_bytes
        text = decoder.decode(raw, final=final)
        if self.replaced_bytes != before:
            self._note(self.bad_byte_lines, f"{path}:{line_number}")
        nuls = raw.count(b"\x00")
        if nuls:
            self.nul_bytes += nuls
            self._note(self.nul_byte_lines, f"{path}:{line_number}")
        return text

    def documents(self):
        """Yield `Document`s in file order; whitespace-only lines separate documents."""
        for path in self.paths:
            reason = not_text_reason(path)
            if reason:
                self.skipped_files.append({"path": path, "reason": reason})
                self.skipped_bytes += os.path.getsize(path)
                logging.warning("SKIPPED %s: %s", path, reason)
                continue
            found_text = False
            for document in self._file_documents(path):
                found_text = True
                yield document
            if not found_text:
                self.empty_files.append(path)
                logging.warning("%s has no text (empty or whitespace only); skipped", path)

    def _file_lines(self, path):
        """Yield (line number, text, whether it is the whole line) for each line of a file.

        A line longer than LINE_PIECE_BYTES (a file without line breaks) comes in pieces:
        each piece read is cut after its last sentence end (。！？!?) and the rest carried
        into the next; a piece without a sentence end is cut where it stops.
        """
        decoder = codecs.getincrementaldecoder("utf-8")(errors="albert_count_replace")
        line_number, carried, in_pieces = 0, "", False
        with open(path, "rb") as reader:
            while raw := reader.readline(LINE_PIECE_BYTES):
                if not in_pieces:
                    line_number += 1
                ends = raw.endswith(b"\n") or len(raw) < LINE_PIECE_BYTES  # or the file ends
                text = carried + self._decode(decoder, raw, ends, path, line_number)
                if line_number == 1 and not in_pieces:
                    text = text.lstrip("\ufeff")  # a UTF-8 byte-order mark
                if ends:
                    self.long_lines += in_pieces
                    yield line_number, text.rstrip("\r\n"), not in_pieces
                    carried, in_pieces = "", False
                    continue
                cut = _last_sentence_end(text) or len(text)
                yield line_number, text[:cut], False
                carried, in_pieces = text[cut:], True
            if in_pieces:  # the file ended exactly at a piece boundary
                self.long_lines += 1
                yield line_number, carried + decoder.decode(b"", final=True), False

    def _file_documents(self, path):
        """The documents of one file: blank lines end them (with one_document_per_line,
        every line does), and one is cut before a line that would take it over
        MAX_DOCUMENT_CHARS characters."""
        numbers, lines, chars, previous_line = [], [], 0, 0
        for line_number, text, whole in self._file_lines(path):
            new_line, previous_line = line_number != previous_line, line_number
            if (self.one_document_per_line and new_line) or (whole and not text.strip()):
                if lines:
                    yield Document(path, numbers, lines)
                numbers, lines, chars = [], [], 0
            if not text.strip():
                continue
            if lines and chars + len(text) > MAX_DOCUMENT_CHARS:
                self.split_documents += 1
                yield Document(path, numbers, lines)
                numbers, lines, chars = [], [], 0
            numbers.append(line_number)
            lines.append(text)
            chars += len(text)
        if lines:
            yield Document(path, numbers, lines)


def iter_blocks(documents, block_chars):
    """Group documents into `Block`s of at least `block_chars` characters (the last may be
    smaller). Boundaries depend only on the documents, which is what makes the output
    independent of the number of workers."""
    batch, chars, num_bytes, index = [], 0, 0, 0
    for document in documents:
        batch.append(document)
        for line in document.lines:
            chars += len(line)
            num_bytes += len(line.encode("utf-8", errors="replace")) + 1
        if chars >= block_chars:
            yield Block(index, batch, num_bytes)
            batch, chars, num_bytes, index = [], 0, 0, index + 1
    if batch:
        yield Block(index, batch, num_bytes)


# ----------------------------------------------------------------------------- worker side


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Everything a worker needs (plain values, so it pickles to spawned processes)."""

    vocab_file: str
    do_lower_case: bool = True
    do_whole_word_mask: bool = False
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    random_seed: int = 12345
    dupe_factor: int = 10
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    non_chinese: bool = False
    ngram: int = 1
    original_wwm_labels: bool = False
    one_document_per_line: bool = False
    segmenter: str = tokenization.DEFAULT_WORD_SEGMENTER


@dataclasses.dataclass
class Sentence:
    """Token ids of one sentence and, per token, whether it starts a whole word."""

    ids: list
    word_starts: bytes


@dataclasses.dataclass
class Instance:
    """One training example before padding: [CLS] A [SEP] B [SEP]."""

    input_ids: list
    num_segment_a_tokens: int  # [CLS] + A + [SEP]
    is_swapped: int
    masked_positions: list
    masked_label_ids: list
    word_units: list  # the masking units (ranges of positions); kept for tests


class BlockProcessor:
    """Turns blocks of documents into training instances; one per worker process."""

    def __init__(self, config):
        self.config = config
        self.tokenizer = tokenization.FullTokenizer(config.vocab_file, config.do_lower_case)
        vocab = self.tokenizer.vocab
        for token in (CLS, SEP, MASK):
            if token not in vocab:
                raise errors.AlbertError(
                    f"{config.vocab_file} has no {token} entry; pass the model's vocab.txt"
                )
        self.cls_id, self.sep_id, self.mask_id = vocab[CLS], vocab[SEP], vocab[MASK]
        # The 10% random replacements must look like real input: no [PAD]/[unused*]/special
        # tokens and no "##X" Chinese entries (the tokenizer never produces those).
        self.replacement_ids = sorted(
            token_id
            for token, token_id in vocab.items()
            if not (token.startswith("[") and token.endswith("]") and len(token) > 2)
            and not (token.startswith("##") and _is_chinese_text(token[2:]))
            and token.strip()
        )
        # id of "X" -> id of "##X", for --original_wwm_labels.
        self.hash_label_ids = {
            token_id: vocab["##" + token]
            for token, token_id in vocab.items()
            if _is_chinese_text(token) and "##" + token in vocab
        }
        self.needs_word_starts = config.do_whole_word_mask or (
            config.original_wwm_labels and not config.non_chinese
        )
        self.use_jieba = self.needs_word_starts and not config.non_chinese
        self._segment = tokenization.word_segmenter(config.segmenter) if self.use_jieba else None
        self._piece_cache = {}
        self.varint = [
            _encode_varint(value)
            for value in range(max(max(vocab.values()), config.max_seq_length) + 1)
        ]
        self.stats = collections.Counter()
        self.skipped_line_examples = []

    # -- tokenization ---------------------------------------------------------

    def _tokenize_piece(self, piece):
        """Cached (ids, jieba text, word-start flags) of one piece of a line.

        A line's pieces are token boundaries, so concatenating the cached pieces gives the
        FullTokenizer's exact output, without running its per-character Python code again
        for every occurrence of a character. The jieba text has one character per token: the
        Chinese character itself, or a space for any other token (jieba never joins words
        across a space). The flags are 0 for WordPiece continuations ("##lo").
        """
        tokens = self.tokenizer.tokenize(piece)
        entry = (
            self.tokenizer.convert_tokens_to_ids(tokens),
            "".join(
                token if len(token) == 1 and _is_chinese_text(token) else " " for token in tokens
            ),
            bytes(0 if token.startswith("##") else 1 for token in tokens),
        )
        if len(self._piece_cache) > 100_000:  # bound the memory taken by rare pieces
            self._piece_cache.clear()
        self._piece_cache[piece] = entry
        return entry

    def tokenize_line(self, line):
        """Return (ids, jieba text, WordPiece word-start flags) of one line; the ids equal
        FullTokenizer's, the text and flags have one entry per token."""
        cache = self._piece_cache
        entries = [
            cache[piece] if piece in cache else self._tokenize_piece(piece)
            for piece in _PIECES.findall(line)
        ]
        ids = [token_id for entry in entries for token_id in entry[0]]
        return (
            ids,
            "".join([entry[1] for entry in entries]),
            b"".join([entry[2] for entry in entries]),
        )

    def word_starts(self, jieba_text, wordpiece_starts):
        """Flags, 1 where a token starts a whole word: the same words as
        tokenization.jieba_word_spans, with one jieba call per sentence."""
        if not self.use_jieba:
            return wordpiece_starts
        jieba_starts = bytearray(len(jieba_text))
        position = 0
        for word in self._segment(jieba_text):
            jieba_starts[position] = 1
            position += len(word)
        # A token starts a word if jieba starts one there (every non-Chinese token is a
        # one-space "word") and it is not a "##" continuation: a bitwise AND of the flags.
        both = int.from_bytes(jieba_starts, "big") & int.from_bytes(wordpiece_starts, "big")
        return both.to_bytes(len(jieba_text), "big")

    def split_sentences(self, line):
        if not self.config.one_document_per_line:
            return [line]
        return [part for part in _SENTENCE.findall(line) if part.strip()]

    def tokenize_sentence(self, text):
        """The `Sentence` of a piece of text (None if it has no token)."""
        ids, jieba_text, wordpiece_starts = self.tokenize_line(text)
        if not ids:
            return None
        starts = self.word_starts(jieba_text, wordpiece_starts) if self.needs_word_starts else b""
        return Sentence(ids, starts)

    def line_sentences(self, line):
        """The `Sentence`s of one line, none longer than an instance can hold.

        A line (or --one_document_per_line sentence) with more tokens than max_seq_length - 3
        is split at its sentence ends, and a sentence still too long is cut into pieces that
        fit, at a word start where one is near the limit. The original kept such a line whole
        and truncation then threw most of it away.
        """
        limit = self.config.max_seq_length - 3
        sentences = []
        for text in self.split_sentences(line):
            sentence = self.tokenize_sentence(text)
            if sentence is None:
                continue
            if len(sentence.ids) <= limit:
                sentences.append(sentence)
                continue
            parts = [part for part in _SENTENCE.findall(text) if part.strip()]
            if len(parts) > 1:
                self.stats["long_lines_split_at_sentence_ends"] += 1
                pieces = [self.tokenize_sentence(part) for part in parts]
            else:
                pieces = [sentence]
            for piece in pieces:
                if piece is not None:
                    sentences.extend(self.cut_to_fit(piece, limit))
        return sentences

    def cut_to_fit(self, sentence, limit):
        """`sentence` cut into consecutive pieces of at most `limit` tokens."""
        if len(sentence.ids) <= limit:
            return [sentence]
        pieces = []
        ids, starts = sentence.ids, sentence.word_starts
        while len(ids) > limit:
            cut = limit
            if starts:  # the last word start in the second half of the limit, if any
                cut = starts.rfind(b"\x01", limit // 2 + 1, limit + 1)
                cut = cut if cut > 0 else limit
            pieces.append(Sentence(ids[:cut], starts[:cut]))
            ids = ids[cut:]
            starts = b"\x01" + starts[cut + 1 :] if starts else b""  # a cut word resumes
        pieces.append(Sentence(ids, starts))
        self.stats["sentences_cut_without_sentence_end"] += 1
        return pieces

    def tokenize_document(self, document):
        """List of `Sentence`s of a document; lines without any token are counted."""
        sentences = []
        for line_number, line in zip(document.line_numbers, document.lines, strict=True):
            found = self.line_sentences(line)
            if not found:
                self.stats["skipped_lines"] += 1
                if len(self.skipped_line_examples) < 5:
                    self.skipped_line_examples.append(f"{document.path}:{line_number}")
            sentences += found
            self.stats["input_tokens"] += sum(len(s.ids) for s in found)
        return sentences

    # -- instances ------------------------------------------------------------

    def block_instances(self, block, rng):
        """Yield the instances of a block: every document, `dupe_factor` times, each time
        with new random splits and masks. jieba runs once per sentence, not per round."""
        documents = []
        for document in block.documents:
            sentences = self.tokenize_document(document)
            if sentences:
                documents.append(sentences)
        self.stats["documents"] += len(documents)
        for _ in range(self.config.dupe_factor):
            for sentences in documents:
                yield from self.document_instances(sentences, rng)

    def document_instances(self, sentences, rng):
        """Cut one document into [CLS] A [SEP] B [SEP] instances.

        See docs/formats.md#instances-from-a-document, plus the single-sentence fix described
        in the module docstring.
        """
        max_num_tokens = self.config.max_seq_length - 3
        target_length = max_num_tokens
        if rng.random() < self.config.short_seq_prob:
            target_length = rng.randint(2, max_num_tokens)
        instances = []
        chunk, chunk_length = [], 0
        for index, sentence in enumerate(sentences):
            chunk.append(sentence)
            chunk_length += len(sentence.ids)
            if index == len(sentences) - 1 or chunk_length >= target_length:
                pair = self.split_chunk(chunk, rng)
                if pair is None:
                    self.stats["dropped_single_word_chunks"] += 1
                    self.stats["dropped_tokens"] += chunk_length
                else:
                    instances.append(self.make_instance(*pair, max_num_tokens, rng))
                chunk, chunk_length = [], 0
        return instances

    def split_chunk(self, chunk, rng):
        """Return ((ids_a, starts_a), (ids_b, starts_b)) or None if the chunk is one word."""
        if len(chunk) >= 2:
            a_end = rng.randint(1, len(chunk) - 1)
            parts = (chunk[:a_end], chunk[a_end:])
            return tuple(
                ([i for s in part for i in s.ids], b"".join(s.word_starts for s in part))
                for part in parts
            )
        ids, starts = chunk[0].ids, chunk[0].word_starts
        if starts:
            cuts = [position for position in range(1, len(ids)) if starts[position]]
        else:
            cuts = list(range(1, len(ids)))
        if not cuts:
            return None
        cut = rng.choice(cuts)
        return (ids[:cut], starts[:cut]), (ids[cut:], starts[cut:])

    def make_instance(self, part_a, part_b, max_num_tokens, rng):
        (ids_a, starts_a), (ids_b, starts_b) = truncate_pair(part_a, part_b, max_num_tokens, rng)
        self.stats["kept_tokens"] += len(ids_a) + len(ids_b)
        self.stats["truncated_tokens"] += len(part_a[0]) + len(part_b[0]) - len(ids_a) - len(ids_b)
        is_swapped = int(rng.random() < 0.5)
        if is_swapped:
            (ids_a, starts_a), (ids_b, starts_b) = (ids_b, starts_b), (ids_a, starts_a)
        input_ids = [self.cls_id, *ids_a, self.sep_id, *ids_b, self.sep_id]
        num_a = len(ids_a) + 2
        units = self.masking_units(len(ids_a), len(ids_b), starts_a + starts_b)
        positions, labels = self.mask_tokens(input_ids, units, starts_a + starts_b, num_a, rng)
        return Instance(input_ids, num_a, is_swapped, positions, labels, units)

    def masking_units(self, length_a, length_b, starts):
        """Ranges of input positions masked together: whole words, or single tokens."""
        if not self.config.do_whole_word_mask:
            return [
                range(p, p + 1)
                for p in (*range(1, 1 + length_a), *range(length_a + 2, length_a + 2 + length_b))
            ]
        units = []
        # A unit is a start flag and the 0 flags after it; the first token of A and of B
        # always starts one (a word cut by truncation or by the A/B split resumes as a unit).
        for part_starts, first_position in (
            (starts[:length_a], 1),
            (starts[length_a:], length_a + 2),
        ):
            units += [
                range(first_position + match.start(), first_position + match.end())
                for match in _WORD_UNIT.finditer(part_starts)
            ]
        return units

    def mask_tokens(self, input_ids, units, starts, num_a, rng):
        """Choose whole units (n-grams of them if --ngram > 1) up to the budget and apply
        80% [MASK] / 10% keep / 10% random. Returns sorted positions and their labels."""
        config = self.config
        budget = min(
            config.max_predictions_per_seq,
            max(1, int(round(len(input_ids) * config.masked_lm_prob))),
        )
        unit_order = list(range(len(units)))
        rng.shuffle(unit_order)
        covered = bytearray(len(units))
        chosen = []
        for first in unit_order:
            if len(chosen) >= budget:
                break
            if covered[first]:
                continue
            max_n = min(config.ngram, len(units) - first)
            n = (
                1
                if max_n == 1
                else rng.choices(
                    range(1, max_n + 1), weights=[1.0 / k for k in range(1, max_n + 1)]
                )[0]
            )
            # Back off to fewer words when the n-gram does not fit the budget (as Google).
            while n > 0 and len(chosen) + sum(len(u) for u in units[first : first + n]) > budget:
                n -= 1
            if n == 0 or any(covered[first : first + n]):
                continue
            for unit_index in range(first, first + n):
                covered[unit_index] = 1
                chosen.extend(units[unit_index])
        chosen.sort()
        labels = []
        for position in chosen:
            original_id = input_ids[position]
            labels.append(self.label_id(original_id, position, starts, num_a))
            if rng.random() < 0.8:
                input_ids[position] = self.mask_id
            elif rng.random() >= 0.5:
                input_ids[position] = rng.choice(self.replacement_ids)
            # else: keep the original token
        return chosen, labels

    def label_id(self, token_id, position, starts, num_a):
        """The id that was at `position`, or its "##X" id under --original_wwm_labels."""
        if not (self.config.original_wwm_labels and starts):
            return token_id
        offset = position - 1 if position < num_a else position - 2  # skip [CLS] / [SEP]
        if starts[offset]:
            return token_id
        return self.hash_label_ids.get(token_id, token_id)

    # -- serialization -----------------------------------------------------------

    def serialize(self, instance):
        """The tf.train.Example protobuf bytes of an instance, in the original schema."""
        config = self.config
        seq_length, max_predictions = config.max_seq_length, config.max_predictions_per_seq
        varint = self.varint
        num_tokens = len(instance.input_ids)
        padding = b"\x00" * (seq_length - num_tokens)
        num_masked = len(instance.masked_positions)
        label_padding = b"\x00" * (max_predictions - num_masked)
        features = [
            _int64_feature(
                b"input_ids", b"".join([varint[i] for i in instance.input_ids]) + padding
            ),
            _int64_feature(b"input_mask", b"\x01" * num_tokens + padding),
            _int64_feature(
                b"segment_ids",
                b"\x00" * instance.num_segment_a_tokens
                + b"\x01" * (num_tokens - instance.num_segment_a_tokens)
                + padding,
            ),
            _int64_feature(
                b"masked_lm_positions",
                b"".join([varint[p] for p in instance.masked_positions]) + label_padding,
            ),
            _int64_feature(
                b"masked_lm_ids",
                b"".join([varint[i] for i in instance.masked_label_ids]) + label_padding,
            ),
            _float_feature(
                b"masked_lm_weights", [1.0] * num_masked + [0.0] * (max_predictions - num_masked)
            ),
            _int64_feature(b"next_sentence_labels", varint[instance.is_swapped]),
        ]
        return _length_delimited(1, b"".join(features))

    def process_block(self, block):
        """Serialized examples of a block in a seeded shuffled order, plus the counters for
        the summary. Block b always uses Random("<random_seed>:<b>"), in any process."""
        self.stats = collections.Counter()
        self.skipped_line_examples = []
        rng = random.Random(f"{self.config.random_seed}:{block.index}")
        records = []
        for instance in self.block_instances(block, rng):
            records.append(self.serialize(instance))  # bytes only: instances are big
            self.stats["instances"] += 1
            self.stats["instance_tokens"] += len(instance.input_ids)
            self.stats["masked_tokens"] += len(instance.masked_positions)
        rng.shuffle(records)
        return block.index, block.num_bytes, records, self.stats, self.skipped_line_examples


def truncate_pair(part_a, part_b, max_num_tokens, rng):
    """Trim the longer side until both fit, from the front or back with p = 0.5 each
    (the original's rule, drawn per removed token, applied with slices)."""
    (ids_a, starts_a), (ids_b, starts_b) = part_a, part_b
    length_a, length_b = len(ids_a), len(ids_b)
    removed_a = removed_b = 0
    while length_a + length_b > max_num_tokens:
        if length_a > length_b:
            length_a, removed_a = length_a - 1, removed_a + 1
        else:
            length_b, removed_b = length_b - 1, removed_b + 1

    def trim(ids, starts, removed):
        if not removed:
            return ids, starts
        front = sum(rng.random() < 0.5 for _ in range(removed))
        back = len(ids) - (removed - front)
        ids = ids[front:back]
        if starts:
            starts = b"\x01" + starts[front + 1 : back]  # a cut word resumes as a new unit
        return ids, starts

    return trim(ids_a, starts_a, removed_a), trim(ids_b, starts_b, removed_b)


# -- hand-written protobuf encoding (keeps TensorFlow out of the worker processes) --------


def _encode_varint(value):
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


_SMALL_VARINTS = [_encode_varint(value) for value in range(1 << 14)]


def _length_delimited(field_number, payload):
    """Field `field_number` with wire type 2 (length-delimited)."""
    length = len(payload)
    length_bytes = _SMALL_VARINTS[length] if length < 1 << 14 else _encode_varint(length)
    return _SMALL_VARINTS[field_number << 3 | 2] + length_bytes + payload


def _feature_entry(name, feature):
    """One entry of Features.feature (a map<string, Feature>: key = 1, value = 2)."""
    return _length_delimited(1, _length_delimited(1, name) + _length_delimited(2, feature))


def _int64_feature(name, packed_varints):
    # Feature.int64_list = 3; Int64List.value = 1 (packed).
    return _feature_entry(name, _length_delimited(3, _length_delimited(1, packed_varints)))


def _float_feature(name, values):
    # Feature.float_list = 2; FloatList.value = 1 (packed little-endian float32).
    packed = struct.pack(f"<{len(values)}f", *values)
    return _feature_entry(name, _length_delimited(2, _length_delimited(1, packed)))


_worker = None


def _init_worker(config):
    global _worker
    _worker = BlockProcessor(config)


def _process_block_in_worker(block):
    return _worker.process_block(block)


# ----------------------------------------------------------------------------- parent side


def output_paths(spec, shards):
    """The output files: each --output_file, split into `shards` names if shards > 1."""
    paths = [part.strip() for part in (spec or "").split(",") if part.strip()]
    if not paths:
        raise errors.AlbertError("--output_file is empty; give one or more TFRecord paths")
    if shards < 1:
        raise errors.AlbertError(f"--output_shards={shards}: must be at least 1")
    for path in paths:
        errors.check_output_path(path, "output_file")
    if shards == 1:
        return paths
    sharded = []
    for path in paths:
        stem, suffix = os.path.splitext(path)
        sharded += [f"{stem}-{k:05d}-of-{shards:05d}{suffix}" for k in range(shards)]
    return sharded


class ShardedWriter:
    """Deals records round-robin over TFRecord files (TensorFlow's writer does the CRCs)."""

    def __init__(self, paths):
        import tensorflow as tf  # only the parent pays for importing TensorFlow

        for path in paths:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.writers = [tf.io.TFRecordWriter(path) for path in paths]
        self.count = 0

    def write(self, record):
        self.writers[self.count % len(self.writers)].write(record)
        self.count += 1

    def close(self):
        for writer in self.writers:
            writer.close()


class Progress:
    """Logs MB/s, instances and ETA (from the input size) every PROGRESS_SECONDS."""

    def __init__(self, total_bytes):
        self.total_bytes = max(total_bytes, 1)
        self.interval = PROGRESS_SECONDS
        self.start = self.last = time.time()
        self.logged_bytes = None

    def update(self, done_bytes, instances, force=False):
        now = time.time()
        if not force and now - self.last < self.interval:
            return
        if force and done_bytes == self.logged_bytes:
            return  # this very state was just logged
        self.last, self.logged_bytes = now, done_bytes
        elapsed = max(now - self.start, 1e-9)
        rate = done_bytes / elapsed
        eta = (self.total_bytes - done_bytes) / rate if rate > 0 else float("inf")
        logging.info(
            "%.1f/%.1f MB (%.0f%%), %.2f MB/s, %d instances, elapsed %.0fs, ETA %.0fs",
            done_bytes / 1e6,
            self.total_bytes / 1e6,
            100.0 * done_bytes / self.total_bytes,
            rate / 1e6,
            instances,
            elapsed,
            max(eta, 0.0),
        )


def validate(config, num_workers, block_chars):
    checks = [
        (config.max_seq_length >= 5, f"--max_seq_length={config.max_seq_length}: need >= 5"),
        (
            config.max_predictions_per_seq >= 1,
            f"--max_predictions_per_seq={config.max_predictions_per_seq}: need >= 1",
        ),
        (
            0.0 < config.masked_lm_prob <= 1.0,
            f"--masked_lm_prob={config.masked_lm_prob}: need 0 < p <= 1",
        ),
        (
            0.0 <= config.short_seq_prob <= 1.0,
            f"--short_seq_prob={config.short_seq_prob}: need 0 <= p <= 1",
        ),
        (config.dupe_factor >= 1, f"--dupe_factor={config.dupe_factor}: need >= 1"),
        (config.ngram >= 1, f"--ngram={config.ngram}: need >= 1"),
        (num_workers >= 0, f"--num_workers={num_workers}: need >= 0 (0 = one per core)"),
        (block_chars >= 1, f"--block_chars={block_chars}: need >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise errors.AlbertError(message)


def generate(
    config, input_files, output_files, num_workers=1, block_chars=200_000, summary_file=None
):
    """Run the whole pipeline; returns the summary dict, also written as JSON to
    `summary_file` (default: the first output file + ".summary.json")."""
    validate(config, num_workers, block_chars)
    num_workers = num_workers or os.cpu_count() or 1
    start = time.time()
    reader = InputReader(input_files, config.one_document_per_line)
    total_bytes = sum(os.path.getsize(path) for path in input_files)
    blocks = iter_blocks(reader.documents(), block_chars)
    stats = collections.Counter()
    skipped_examples = []
    progress = Progress(total_bytes)

    # Workers are started before TensorFlow is imported and never import it themselves.
    pool = None
    if num_workers > 1:
        pool = multiprocessing.get_context("spawn").Pool(
            num_workers, initializer=_init_worker, initargs=(config,)
        )
        run_block = None
    else:
        local = BlockProcessor(config)
        run_block = local.process_block
    writer = ShardedWriter(output_files)
    done_bytes = 0

    def consume(result):
        nonlocal done_bytes
        _, num_bytes, records, block_stats, block_skipped = result
        for record in records:
            writer.write(record)
        stats.update(block_stats)
        skipped_examples.extend(block_skipped[: max(0, 5 - len(skipped_examples))])
        done_bytes += num_bytes
        progress.update(done_bytes + reader.skipped_bytes, stats["instances"])

    try:
        if pool is None:
            for block in blocks:
                consume(run_block(block))
        else:
            # Ordered results with a bounded number of blocks in flight (Pool.imap would read
            # the whole input ahead).
            pending = collections.deque()
            for block in blocks:
                pending.append(pool.apply_async(_process_block_in_worker, (block,)))
                if len(pending) >= 2 * num_workers:
                    consume(pending.popleft().get())
            while pending:
                consume(pending.popleft().get())
    finally:
        writer.close()
        if pool is not None:
            pool.terminate()  # every result has been consumed (or we are failing anyway)
            pool.join()
    progress.update(done_bytes + reader.skipped_bytes, stats["instances"], force=True)

    seconds = time.time() - start
    # Every input token, in each of the dupe_factor rounds, ends up in an instance, cut off by
    # truncation, or in a dropped one-word chunk.
    round_tokens = stats["input_tokens"] * config.dupe_factor
    kept_share = stats["kept_tokens"] / round_tokens if round_tokens else 1.0
    summary = {
        "input_files": input_files,
        "output_files": output_files,
        "input_megabytes": round(total_bytes / 1e6, 3),
        "documents": stats["documents"],
        "documents_split_for_size": reader.split_documents,
        "lines_read_in_pieces": reader.long_lines,
        "long_lines_split_at_sentence_ends": stats["long_lines_split_at_sentence_ends"],
        "sentences_cut_without_sentence_end": stats["sentences_cut_without_sentence_end"],
        "input_tokens": stats["input_tokens"],
        "kept_tokens": stats["kept_tokens"],
        "truncated_tokens": stats["truncated_tokens"],
        "dropped_tokens": stats["dropped_tokens"],
        "kept_token_share": round(kept_share, 4),
        "instances": stats["instances"],
        "tokens": stats["instance_tokens"],
        "masked_tokens": stats["masked_tokens"],
        "masked_fraction": round(stats["masked_tokens"] / max(stats["instance_tokens"], 1), 4),
        "replaced_bytes": reader.replaced_bytes,
        "lines_with_replaced_bytes": reader.bad_byte_lines,
        "nul_bytes": reader.nul_bytes,
        "lines_with_nul_bytes": reader.nul_byte_lines,
        "skipped_files": reader.skipped_files,
        "skipped_lines": stats["skipped_lines"],
        "skipped_line_examples": skipped_examples,
        "dropped_single_word_chunks": stats["dropped_single_word_chunks"],
        "empty_input_files": reader.empty_files,
        "seconds": round(seconds, 2),
        "megabytes_per_second": round(total_bytes / 1e6 / max(seconds, 1e-9), 3),
        "num_workers": num_workers,
        "block_chars": block_chars,
        "config": dataclasses.asdict(config),
    }
    summary_path = summary_file or output_files[0] + ".summary.json"
    with open(summary_path, "w", encoding="utf-8") as f:
        json.dump(summary, f, ensure_ascii=False, indent=2)
    summary["summary_file"] = summary_path
    report_problems(summary)

    if stats["instances"] == 0:
        for path in output_files:  # an empty TFRecord must not be mistaken for data
            os.remove(path)
    if stats["documents"] == 0:
        problem = "empty or whitespace only"
        if reader.skipped_files:
            problem += f", or not UTF-8 text ({len(reader.skipped_files)} file(s) skipped)"
        raise errors.AlbertError(
            f"no text in {', '.join(input_files)}: the input is {problem} (expected UTF-8 "
            "text, one sentence per line, blank lines between documents)"
        )
    if stats["instances"] == 0:
        raise errors.AlbertError(
            f"no instances from {stats['documents']} documents in {', '.join(input_files)}: "
            "every document is a single word; give longer text"
        )
    return summary


def report_problems(summary):
    """Log a warning for everything in the summary that was repaired, skipped or lost."""
    if summary["skipped_files"]:
        logging.warning(
            "%d input file(s) SKIPPED as not UTF-8 text: %s",
            len(summary["skipped_files"]),
            "; ".join(f"{s['path']}: {s['reason']}" for s in summary["skipped_files"]),
        )
    if summary["replaced_bytes"]:
        logging.warning(
            "%d invalid UTF-8 bytes replaced (first in %s); if the file is GBK, convert it "
            "first: iconv -f gbk -t utf-8",
            summary["replaced_bytes"],
            ", ".join(summary["lines_with_replaced_bytes"]),
        )
    if summary["nul_bytes"]:
        logging.warning(
            "%d NUL bytes (\\x00) dropped (first in %s); NUL bytes in text usually mean "
            "UTF-16 (convert: iconv -f utf-16 -t utf-8) or a damaged file",
            summary["nul_bytes"],
            ", ".join(summary["lines_with_nul_bytes"]),
        )
    if summary["skipped_lines"]:
        logging.warning(
            "%d lines had no tokens and were skipped (e.g. %s)",
            summary["skipped_lines"],
            ", ".join(summary["skipped_line_examples"]),
        )
    if (
        summary["long_lines_split_at_sentence_ends"]
        or summary["sentences_cut_without_sentence_end"]
    ):
        logging.info(
            "lines too long for one instance: %d split at sentence ends, %d sentences cut "
            "without one (%d lines over %d bytes read in pieces)",
            summary["long_lines_split_at_sentence_ends"],
            summary["sentences_cut_without_sentence_end"],
            summary["lines_read_in_pieces"],
            LINE_PIECE_BYTES,
        )
    rounds = summary["config"]["dupe_factor"]
    total = summary["input_tokens"] * rounds
    lost = (
        f"{summary['kept_tokens']:,} of {total:,} input tokens ({summary['kept_token_share']:.1%}"
        f"; {rounds} round(s) of {summary['input_tokens']:,}) are in the instances: "
        f"{summary['truncated_tokens']:,} cut by truncation, {summary['dropped_tokens']:,} in "
        "dropped one-word chunks"
    )
    if total and summary["kept_token_share"] < MIN_KEPT_TOKEN_SHARE:
        max_seq_length = summary["config"]["max_seq_length"]
        logging.warning(
            "\n%s\nONLY %s.\nThat is below %.0f%%: raise --max_seq_length (now %d) or give "
            "shorter lines.\n%s",
            "!" * 72,
            lost,
            100 * MIN_KEPT_TOKEN_SHARE,
            max_seq_length,
            "!" * 72,
        )
    elif total:
        logging.info("%s", lost)


def define_flags():
    """The command-line flags (defined only when run as a script, so importing this module
    next to run_pretraining.py, which has flags of the same names, is fine)."""
    flags.DEFINE_string(
        "input_file", None, "Input text files: a comma list; each item may be a glob."
    )
    flags.DEFINE_string(
        "output_file", None, "Output TFRecord files (comma list); instances are dealt round-robin."
    )
    flags.DEFINE_string("vocab_file", None, "The vocab.txt the model was trained with.")
    flags.DEFINE_bool("do_lower_case", True, "Lower-case the input (and strip accents).")
    flags.DEFINE_bool("do_whole_word_mask", False, "Mask whole words (jieba words for Chinese).")
    flags.DEFINE_integer(
        "max_seq_length", 128, "Maximum sequence length, [CLS] and [SEP]s included."
    )
    flags.DEFINE_integer(
        "max_predictions_per_seq", 20, "Maximum number of masked tokens per sequence."
    )
    flags.DEFINE_integer("random_seed", 12345, "Random seed for data generation.")
    flags.DEFINE_integer("dupe_factor", 10, "Number of times to mask each document differently.")
    flags.DEFINE_float("masked_lm_prob", 0.15, "Fraction of tokens to mask.")
    flags.DEFINE_float(
        "short_seq_prob", 0.1, "Probability of a shorter than maximum target length."
    )
    flags.DEFINE_bool(
        "non_chinese", False, "Not Chinese: words are WordPiece words ('##' pieces), no jieba."
    )
    flags.DEFINE_integer(
        "ngram", 1, "Mask n-grams of up to this many whole words (p ~ 1/n); 1 = the original."
    )
    flags.DEFINE_integer("num_workers", 0, "Worker processes; 0 = one per CPU core.")
    flags.DEFINE_integer(
        "output_shards", 1, "Split every output file into this many shards (name-0000K-of-0000N)."
    )
    flags.DEFINE_bool(
        "one_document_per_line",
        False,
        "Each line is a document (split into sentences at 。！？!?) instead of blank-line breaks.",
    )
    flags.DEFINE_bool(
        "original_wwm_labels",
        False,
        "Label non-initial characters of a Chinese word with their '##X' ids, as brightmart's "
        "generator did (only to continue a checkpoint pretrained on such labels).",
    )
    flags.DEFINE_integer(
        "block_chars",
        200_000,
        "Characters per work block. The output depends on it (not on num_workers).",
    )
    flags.DEFINE_enum(
        "segmenter",
        tokenization.DEFAULT_WORD_SEGMENTER,
        list(tokenization.WORD_SEGMENTERS),
        "Chinese word segmenter for whole-word masking: rjieba (jieba in Rust, ~12x faster) or "
        "jieba (the Python package); both are jieba's algorithm and dictionary.",
    )


def main(_):
    logging.set_verbosity(logging.INFO)
    for name in ("input_file", "output_file", "vocab_file"):
        if not getattr(FLAGS, name):
            raise errors.AlbertError(f"--{name} is required")
    config = GeneratorConfig(
        vocab_file=FLAGS.vocab_file,
        do_lower_case=FLAGS.do_lower_case,
        do_whole_word_mask=FLAGS.do_whole_word_mask,
        max_seq_length=FLAGS.max_seq_length,
        max_predictions_per_seq=FLAGS.max_predictions_per_seq,
        random_seed=FLAGS.random_seed,
        dupe_factor=FLAGS.dupe_factor,
        masked_lm_prob=FLAGS.masked_lm_prob,
        short_seq_prob=FLAGS.short_seq_prob,
        non_chinese=FLAGS.non_chinese,
        ngram=FLAGS.ngram,
        original_wwm_labels=FLAGS.original_wwm_labels,
        one_document_per_line=FLAGS.one_document_per_line,
        segmenter=FLAGS.segmenter,
    )
    tokenization.load_vocab(config.vocab_file)  # a clear error before any worker starts
    input_files = pretraining_data.expand_input_files(FLAGS.input_file, "input_file")
    output_files = output_paths(FLAGS.output_file, FLAGS.output_shards)
    logging.info(
        "Reading %d input files, writing %d output files", len(input_files), len(output_files)
    )
    # Named after --output_file, not after a shard, so that a glob over the shards
    # (train-*) never picks the summary up as a TFRecord.
    summary_file = FLAGS.output_file.split(",")[0].strip() + ".summary.json"
    summary = generate(
        config, input_files, output_files, FLAGS.num_workers, FLAGS.block_chars, summary_file
    )
    logging.info(
        "Wrote %d instances from %d documents (%d tokens, %d masked) in %.1fs; summary: %s",
        summary["instances"],
        summary["documents"],
        summary["tokens"],
        summary["masked_tokens"],
        summary["seconds"],
        summary["summary_file"],
    )


if __name__ == "__main__":
    define_flags()
    errors.run_main(main)
