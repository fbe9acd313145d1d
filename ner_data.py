"""Named-entity recognition data: readers, character/token alignment, windows, metrics, writers.

The unit of truth is the CHARACTER: an entity is `Entity(type, start, end)` with character
offsets into the raw sentence text (`end` exclusive, Python-style; CLUENER's inclusive end is
converted on reading and writing). Everything else is derived from it:

  text --tokenize_with_offsets--> WordPiece tokens, each with (char_start, char_end)
       --label units--> the first token of each unit carries the unit's tag, any other
                        tokens of the unit are masked out of the loss and the metrics
       --windows--> [CLS] tokens [SEP] rows of at most max_seq_length tokens (`NerFeatures`)
  per-window tag predictions --merge--> one tag per unit --extract--> character entities

A label unit is a character by default (units="char": Latin words are split into one
WordPiece per character, so every character span can be tagged; CLUENER has 74 gold entities
that start or end inside a Latin word, e.g. "ac米兰" in "vsac米兰") or a BasicTokenizer word
(units="word": tokens identical to FullTokenizer.tokenize; such entities are widened to whole
words and counted).

Readers (`read_cluener`, `read_bio`) never drop a row silently: bad rows are counted in a
`NerReadReport` (and quoted as file:line) or, with strict=True, raise a one-line
`errors.AlbertError`. Decisions, in one place:

  * Overlapping or nested entities (CLUENER train line 1507: a book title containing two
    company names) cannot be expressed by one flat tag sequence: the LONGER entity is kept
    (on equal length the earlier one) and every dropped entity is counted and quoted. This
    is a property of the annotation, not an error, so it is never fatal.
  * An `I-X` without a `B-X` before it (and, for BIOES/BMES, any other broken sequence such as
    `B-X O` or `E-X` after `O`) is read leniently exactly as seqeval's default mode /
    conlleval reads it (`O I-X I-X` is one entity X) and counted as repaired; strict=True
    makes it an error instead.
  * Empty sentences are skipped and counted in labelled files; in an unlabelled file they are
    kept (and counted) so that every test id still gets a line in the submission.
  * A sentence longer than max_seq_length - 2 tokens is cut into overlapping windows (see
    `window_ranges`; by default windows start every half window); each unit's prediction
    is taken from the window in which it is most central. Split sentences are counted in
    the `FeatureReport`.

Tag schemes: BIO (B-X, I-X, O; IOB2), BIOES (B-X, I-X, E-X, S-X, O) and BMES (B-X, M-X, E-X,
S-X, O; BIOES with M for I).
"""

import collections
import dataclasses
import functools
import json
import os
import typing

import numpy as np

import classifier_data
import errors
import tokenization

OUTSIDE = "O"
# The entity prefixes of each tag scheme, in the order `tag_list` emits them.
SCHEMES = {"BIO": ("B", "I"), "BIOES": ("B", "I", "E", "S"), "BMES": ("B", "M", "E", "S")}
# How many corrections (dropped entities, repaired tags) a report quotes as file:line.
MAX_QUOTED_NOTES = 5


class Entity(typing.NamedTuple):
    """One entity: its type and character (or unit) offsets, `end` exclusive."""

    type: str
    start: int
    end: int


# ----------------------------------------------------------------------------- tag schemes


def check_scheme(scheme):
    """Return the canonical scheme name; AlbertError for an unknown one."""
    name = str(scheme).upper()
    if name not in SCHEMES:
        raise errors.AlbertError(
            f"unknown tag scheme {scheme!r}: use one of {', '.join(SCHEMES)} (--tag_scheme)"
        )
    return name


def split_tag(tag):
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''). The type may itself contain '-'."""
    if tag == OUTSIDE:
        return OUTSIDE, ""
    prefix, _, entity_type = tag.partition("-")
    return prefix, entity_type


def tag_list(entity_types, scheme="BIO"):
    """All tags of a scheme for these types: 'O' first, then each type's prefixes in order.

    Tag ids are positions in this list, so the order is fixed by the (sorted) types alone and
    does not depend on which tags happen to occur in a file.
    """
    prefixes = SCHEMES[check_scheme(scheme)]
    return [OUTSIDE] + [f"{p}-{t}" for t in entity_types for p in prefixes]


def is_scheme_tag(tag, scheme):
    """Whether `tag` is 'O' or '<prefix>-<type>' with a prefix of `scheme`."""
    prefix, entity_type = split_tag(tag)
    return tag == OUTSIDE or (prefix in SCHEMES[scheme] and bool(entity_type))


def scheme_of(tags):
    """The first scheme of BIO, BIOES, BMES that every tag belongs to (BIO tags are BIOES tags
    too), or None when some tag fits none or there is no entity tag at all (e.g. HF's LABEL_0)."""
    if not any(tag != OUTSIDE for tag in tags):
        return None
    return next((s for s in SCHEMES if all(is_scheme_tag(t, s) for t in tags)), None)


def tag_list_from_labels(labels, scheme="BIO"):
    """Validate a user label list (--labels): every tag of the scheme for its types, once.

    The order is kept (it fixes the tag ids, e.g. to match an earlier model).
    """
    scheme = check_scheme(scheme)
    labels = [label.strip() for label in labels if label.strip()]
    bad = [label for label in labels if not is_scheme_tag(label, scheme)]
    if bad:
        raise errors.AlbertError(
            f"--labels: {', '.join(bad)} not {scheme} tags (expected O and "
            f"{'/'.join(SCHEMES[scheme])}-<type>; is --tag_scheme right?)"
        )
    types = sorted({split_tag(label)[1] for label in labels if label != OUTSIDE})
    missing = [tag for tag in tag_list(types, scheme) if tag not in labels]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if missing or duplicates:
        raise errors.AlbertError(
            f"--labels must hold every {scheme} tag of its types exactly once: "
            f"missing {missing or 'none'}, duplicated {duplicates or 'none'}"
        )
    return labels


def entity_types(examples):
    """The sorted entity types of labelled examples (the label set of a training file)."""
    return sorted({e.type for example in examples for e in example.entities or ()})


def spans_to_tags(spans, length, scheme="BIO"):
    """Tags of `length` units for non-overlapping unit spans (Entity with unit offsets)."""
    scheme = check_scheme(scheme)
    inside = "M" if scheme == "BMES" else "I"
    tags = [OUTSIDE] * length
    for entity_type, start, end in spans:
        if scheme != "BIO" and end - start == 1:
            tags[start] = f"S-{entity_type}"
            continue
        tags[start] = f"B-{entity_type}"
        for i in range(start + 1, end):
            tags[i] = f"{inside}-{entity_type}"
        if scheme != "BIO":
            tags[end - 1] = f"E-{entity_type}"
    return tags


def extract_entities(tags, scheme="BIO", strict=False):
    """The entities (unit offsets, end exclusive) of one tag sequence.

    Lenient (default): conlleval's chunk rules, which seqeval's default mode implements; every
    non-O tag belongs to some entity (`O I-X` starts one, a type change starts one).
    strict=True: seqeval's strict mode (IOB2 / IOBES): only well-formed entities count; an
    `I-X` without `B-X`, or a BIOES `B-X` never closed by `E-X`, yields nothing.
    BMES is read as BIOES with M for I.
    """
    scheme = check_scheme(scheme)
    parsed = [split_tag(tag) for tag in tags]
    if scheme == "BMES":
        parsed = [("I" if p == "M" else p, t) for p, t in parsed]
    if strict:
        return _extract_strict(parsed, scheme)
    return _extract_lenient(parsed)


def _extract_lenient(parsed):
    entities = []
    start = 0
    prev_prefix, prev_type = OUTSIDE, ""
    for i, (prefix, entity_type) in enumerate(parsed + [(OUTSIDE, "")]):
        type_changed = entity_type != prev_type
        # An entity is open exactly when the previous tag is not O.
        if prev_prefix != OUTSIDE and (
            prev_prefix in ("E", "S") or prefix in ("B", "S", OUTSIDE) or type_changed
        ):
            entities.append(Entity(prev_type, start, i))
        if prefix != OUTSIDE and (
            prefix in ("B", "S") or prev_prefix in ("E", "S", OUTSIDE) or type_changed
        ):
            start = i
        prev_prefix, prev_type = prefix, entity_type
    return entities


def _extract_strict(parsed, scheme):
    closing = "I" if scheme == "BIO" else "E"  # the prefix a complete multi-unit entity ends on
    entities = []
    i = 0
    while i < len(parsed):
        prefix, entity_type = parsed[i]
        if prefix == "S" and scheme != "BIO":
            entities.append(Entity(entity_type, i, i + 1))
            i += 1
            continue
        if prefix != "B":
            i += 1
            continue
        j, last = i + 1, "B"
        while j < len(parsed) and last in ("B", "I"):
            next_prefix, next_type = parsed[j]
            if next_type != entity_type or next_prefix not in ("I", closing):
                break
            last = next_prefix
            j += 1
        if scheme == "BIO" or last == "E":
            entities.append(Entity(entity_type, i, j))
        i = j
    return entities


def first_invalid_tag(tags, scheme="BIO"):
    """(position, description) of the first tag that breaks the scheme, or None if valid.

    BIO: `I-X` must follow `B-X` or `I-X`. BIOES/BMES: `I/M-X` and `E-X` must follow `B-X` or
    `I/M-X`; `O`, `B-*`, `S-*` must follow `O`, `E-*` or `S-*`; the last tag is `O`, `E` or `S`.
    The position len(tags) means the sequence ends inside an entity.
    """
    scheme = check_scheme(scheme)
    inside = "M" if scheme == "BMES" else "I"
    prev_prefix, prev_type, prev_tag = OUTSIDE, "", "the sentence start"
    for i, tag in enumerate(tags):
        prefix, entity_type = split_tag(tag)
        continues = prefix in (inside, "E")
        if continues and (prev_prefix not in ("B", inside) or prev_type != entity_type):
            return i, f"{tag} after {prev_tag} (no B-{entity_type} before it)"
        if scheme != "BIO" and not continues and prev_prefix in ("B", inside):
            return i, f"{tag} after {prev_tag} ({prev_tag} is never closed by E-{prev_type})"
        prev_prefix, prev_type, prev_tag = prefix, entity_type, tag
    if scheme != "BIO" and prev_prefix in ("B", inside):
        return len(tags), f"sentence ends with {prev_tag} (never closed by E-{prev_type})"
    return None


def resolve_overlaps(entities):
    """Split entities into (kept, dropped) so that kept ones do not overlap.

    Longer entities win, then earlier ones: a nested entity is dropped in favour of the
    entity containing it. `kept` is sorted by position.
    """
    kept, dropped = [], []
    taken = set()
    for entity in sorted(entities, key=lambda e: (-(e.end - e.start), e.start, e.end, e.type)):
        units = set(range(entity.start, entity.end))
        if units & taken:
            dropped.append(entity)
        else:
            kept.append(entity)
            taken |= units
    return sorted(kept, key=lambda e: (e.start, e.end)), dropped


# ----------------------------------------------------------------------------- reading


@dataclasses.dataclass
class NerExample:
    """One sentence. `entities` is None when unlabelled (a test file)."""

    guid: str
    text: str
    entities: list | None
    source: str = ""  # "file:line", for messages
    id: typing.Any = None  # the CLUENER test id
    # bio files: the line number of each token line and the characters it holds in `text`
    line_numbers: list | None = None
    line_spans: list | None = None


class NerReadReport(classifier_data.ReadReport):
    """ReadReport plus corrections that keep the sentence: dropped entities, repaired tags."""

    def __init__(self, path, strict=False):
        super().__init__(path, strict)
        self.corrected = collections.Counter()  # reason -> count
        self.notes = []  # "file:line: detail" for the first few corrections
        self.kept_empty = 0

    def correct(self, line_number, reason, detail):
        """Count a correction; `reason` is the counted category, `detail` the quoted case."""
        self.corrected[reason] += 1
        if len(self.notes) < MAX_QUOTED_NOTES:
            self.notes.append(f"{self.path}:{line_number}: {detail}")

    def repair(self, line_number, reason, detail, text):
        """A tagging error read leniently; an AlbertError instead when reading strictly."""
        if self.strict:
            self.bad_row(line_number, detail, text)
        self.correct(line_number, reason, detail)

    def summary(self):
        text = super().summary()
        if self.kept_empty:
            text += f"; {self.kept_empty} empty sentences kept (unlabelled, nothing to predict)"
        if self.corrected:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.corrected.items()))
            text += f"; corrected: {reasons}, first: " + " | ".join(self.notes)
        return text


def _empty_sentence(report, example, examples):
    """Skip an empty labelled sentence (counted); keep an unlabelled one for its id."""
    if example.entities is None:
        report.kept_empty += 1
        examples.append(example)
    else:
        report.skip("empty sentences")


def _finish(report, examples):
    report.num_examples = len(examples)
    report.num_unlabelled = sum(1 for e in examples if e.entities is None)
    return examples, report


def read_cluener(path, strict=False, types=None):
    """Read a CLUENER JSON-lines file -> (examples, NerReadReport).

    Rows are `{"text": ..., "label": {type: {entity: [[start, end], ...]}}}` with inclusive
    offsets; a row without "label" (test.json, which has "id"s) is unlabelled. A row whose
    offsets do not match its text, or (when `types` is given) names an unknown type, is a bad
    row: skipped and counted, or an AlbertError when strict.
    """
    report = NerReadReport(path, strict)
    allowed_types = set(types) if types is not None else None
    examples = []
    for line_number, line in classifier_data.data_rows(path, report):
        try:
            row = json.loads(line)
            text = row["text"]
            if not isinstance(text, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            report.bad_row(line_number, 'not a JSON object with a "text" string', line)
            continue
        example = NerExample(
            guid=f"{os.path.basename(path)}-{line_number}",
            text=text,
            entities=None,
            source=f"{path}:{line_number}",
            id=row.get("id"),
        )
        if "label" in row:
            entities, problem = _cluener_entities(row["label"], text, allowed_types)
            if problem:
                report.bad_row(line_number, problem, line)
                continue
            example.entities, dropped = resolve_overlaps(entities)
            for entity in dropped:
                report.correct(
                    line_number,
                    "overlapping entities dropped (the longer one kept)",
                    f"dropped {_describe(entity, text)}, overlaps a longer entity",
                )
        if not text.strip():
            _empty_sentence(report, example, examples)
            continue
        examples.append(example)
    return _finish(report, examples)


def _describe(entity, text):
    """'company 16-19 "招商银行"' with CLUENER's inclusive end, for messages."""
    return f"{entity.type} {entity.start}-{entity.end - 1} {text[entity.start : entity.end]!r}"


def _cluener_entities(label, text, allowed_types):
    """Parse one CLUENER "label" value -> (entities, None) or (None, problem)."""
    if label is None:
        return [], None
    if not isinstance(label, dict):
        return None, '"label" is not an object'
    entities = []
    for entity_type, mentions in label.items():
        if allowed_types is not None and entity_type not in allowed_types:
            return None, f"unknown entity type {entity_type!r} (no such type in train or --labels)"
        if not isinstance(mentions, dict):
            return None, f"label {entity_type!r} is not an object of entity -> offsets"
        for mention, offsets in mentions.items():
            if not isinstance(offsets, list):
                return None, f"offsets of {mention!r} are not a list"
            for pair in offsets:
                if not (
                    isinstance(pair, list)
                    and len(pair) == 2
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in pair)
                ):
                    return None, f"offsets {pair!r} of {mention!r} are not [start, end]"
                start, end = pair
                if not 0 <= start <= end < len(text):
                    return None, f"offsets [{start}, {end}] of {mention!r} are outside the text"
                if text[start : end + 1] != mention:
                    return None, (
                        f"offsets [{start}, {end}] hold {text[start : end + 1]!r}, "
                        f"not the entity {mention!r} (offsets are inclusive, 0-based)"
                    )
                entities.append(Entity(entity_type, start, end + 1))
    return entities, None


def read_bio(path, scheme="BIO", labels=None, strict=False):
    """Read a `character<space or tab>tag` file (blank line between sentences).

    -> (examples, NerReadReport). Every non-blank line is one token: the first field is the
    token (normally one character; a token line whose character is itself a space is
    `<space><separator>tag`), the LAST field is the tag (extra middle columns, as in CoNLL
    files, are ignored). Tokens are concatenated into the sentence text; a token longer than
    one character is separated from its neighbours by a space, so word-per-line files keep
    their word boundaries. A file without tag columns is unlabelled (a test file).

    Tags must be `scheme` tags, and in `labels` when given (--labels); a sentence with a bad
    line is skipped and counted (AlbertError when strict). Sequences that break the scheme
    (e.g. `I-X` without `B-X`) are read like seqeval's default mode and counted as repaired.
    `-DOCSTART-` lines are document separators (counted).
    """
    scheme = check_scheme(scheme)
    report = NerReadReport(path, strict)
    allowed = set(labels) if labels else None
    examples = []
    block = []  # (line_number, text) of the current sentence
    for line_number, line in classifier_data.read_lines(path):
        if line is not None and line.startswith("-DOCSTART-"):
            report.skip("-DOCSTART- lines")
            line = ""
        if line is not None and not line.strip():
            if block:
                _bio_sentence(block, path, scheme, allowed, report, examples)
            block = []
        else:
            block.append((line_number, line))
    if block:
        _bio_sentence(block, path, scheme, allowed, report, examples)
    return _finish(report, examples)


def _split_bio_line(line):
    """A token line -> (token, tag or None)."""
    if line[0].isspace() and len(line) > 1 and line[1] in " \t":
        token, rest = line[0], line[2:].split()  # the token is a space character
    else:
        fields = line.split()
        token, rest = fields[0], fields[1:]
    return token, (rest[-1] if rest else None)


def _bio_sentence(block, path, scheme, allowed, report, examples):
    """Turn the lines of one sentence into a NerExample (or a counted bad sentence)."""
    tokens, tags, numbers = [], [], []
    for line_number, line in block:
        if line is None:
            report.bad_row(line_number, "invalid UTF-8 (sentence skipped)", "<undecodable bytes>")
            return
        token, tag = _split_bio_line(line)
        if tag is not None and not is_scheme_tag(tag, scheme):
            hint = ""
            if split_tag(tag)[0] in ("E", "S", "M"):
                hint = " (the file looks BIOES/BMES: pass --tag_scheme)"
            report.bad_row(line_number, f"{tag!r} is not a {scheme} tag{hint}", line)
            return
        if tag is not None and allowed is not None and tag not in allowed:
            report.bad_row(
                line_number, f"unknown tag {tag!r} (no such tag in train or --labels)", line
            )
            return
        tokens.append(token)
        tags.append(tag)
        numbers.append(line_number)
    labelled = [t is not None for t in tags]
    if any(labelled) and not all(labelled):
        line_number = numbers[labelled.index(False)]
        report.bad_row(line_number, "missing tag column (other lines have one)", block[0][1])
        return

    text, spans = "", []
    for i, token in enumerate(tokens):
        if text and (len(token) > 1 or len(tokens[i - 1]) > 1):
            text += " "
        spans.append((len(text), len(text) + len(token)))
        text += token
    example = NerExample(
        guid=f"{os.path.basename(path)}-{numbers[0]}",
        text=text,
        entities=None,
        source=f"{path}:{numbers[0]}",
        line_numbers=numbers,
        line_spans=spans,
    )
    if all(labelled):
        problem = first_invalid_tag(tags, scheme)
        if problem is not None:
            position, detail = problem
            where = numbers[min(position, len(numbers) - 1)]
            reason = (
                "I- without B- (read as B-, like seqeval)"
                if scheme == "BIO"
                else "invalid tag sequences (read like seqeval's default mode)"
            )
            report.repair(where, reason, detail, block[0][1])
        example.entities = [
            Entity(e.type, spans[e.start][0], spans[e.end - 1][1])
            for e in extract_entities(tags, scheme)
        ]
    if not text.strip():
        _empty_sentence(report, example, examples)
        return
    examples.append(example)


# ----------------------------------------------------------------------------- alignment

# Label units: "char" makes every character a unit (any character span is an entity
# candidate); "word" makes each BasicTokenizer word a unit (tokens identical to FullTokenizer).
UNITS = ("char", "word")


@dataclasses.dataclass
class Encoding:
    """The WordPiece tokens of one text, the characters each comes from, and the label units.

    Token i is `tokens[i]` (id `token_ids[i]`), made from text[starts[i]:ends[i]], and belongs
    to label unit `unit_ids[i]`. Unit u is tagged on its first token `unit_first_token[u]` (its
    other tokens are masked) and covers text[unit_starts[u]:unit_ends[u]].
    """

    tokens: list
    token_ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    unit_ids: np.ndarray
    unit_first_token: np.ndarray
    unit_starts: np.ndarray
    unit_ends: np.ndarray

    @property
    def num_units(self):
        return len(self.unit_first_token)


_ACCENT_STRIPPER = tokenization.BasicTokenizer(do_lower_case=True)


@functools.lru_cache(maxsize=1 << 16)
def _char_kind(char, lower_case):
    """How BasicTokenizer treats one character -> (kind, ((normalized char, is_punct), ...)).

    kind: "drop" (NUL, U+FFFD, control/format: removed without splitting a word), "space"
    (splits words, no token), "cjk" (a word of its own) or "text". The normalized characters
    are lower-cased and accent-stripped when `lower_case` (possibly none, or several).
    Cached: text has few distinct characters, and this is the hot loop of tokenization.
    """
    code = ord(char)
    if code == 0 or code == 0xFFFD or tokenization.is_control(char):
        return "drop", ()
    if tokenization.is_whitespace(char) or char.isspace():
        return "space", ()
    normalized = _ACCENT_STRIPPER._run_strip_accents(char.lower()) if lower_case else char
    kind = "cjk" if tokenization.is_chinese_char(code) else "text"
    return kind, tuple((c, tokenization.is_punctuation(c)) for c in normalized)


def _basic_words(text, lower_case):
    """Split text like BasicTokenizer, keeping for each output character its source index.

    Returns a list of words, each a list of (character, index into text). Dropped characters
    vanish without splitting a word, whitespace splits words and has no token, each CJK
    ideograph and each punctuation character is a word of its own.
    """
    words, current = [], []
    for index, char in enumerate(text):
        kind, normalized = _char_kind(char, lower_case)
        if kind == "text":
            for c, is_punctuation in normalized:
                if is_punctuation:
                    if current:
                        words.append(current)
                        current = []
                    words.append([(c, index)])
                else:
                    current.append((c, index))
        elif kind != "drop":  # space or CJK: the current word ends
            if current:
                words.append(current)
                current = []
            if kind == "cjk" and normalized:
                words.append([(c, index) for c, _ in normalized])
    if current:
        words.append(current)
    return words


def _word_pieces(word, wordpiece):
    """A word's WordPieces as FullTokenizer makes them -> [(token, start, end)], one unit."""
    word_text = "".join(c for c, _ in word)
    pieces = wordpiece.tokenize(word_text)
    if pieces == [wordpiece.unk_token]:
        return [(pieces[0], word[0][1], word[-1][1] + 1)]
    result, position = [], 0
    for i, piece in enumerate(pieces):
        width = len(piece) - (2 if i > 0 else 0)  # "##" marks a continuation piece
        result.append((piece, word[position][1], word[position + width - 1][1] + 1))
        position += width
    return result


def _char_piece(vocab, unk_token, c, continues_word):
    """The one piece of character `c`: "##c" inside a word if the vocab has it, else "c", else
    [UNK]. So "vsac" -> v ##s ##a ##c: the pieces a WordPiece split into characters has."""
    if continues_word and "##" + c in vocab:
        return "##" + c
    return c if c in vocab else unk_token


def tokenize_with_offsets(tokenizer, text, units="char"):
    """Tokenize `text` with a tokenization.FullTokenizer, recording each token's characters.

    A Chinese character is one token, whitespace has no token, an emoji is [UNK]; lower-casing
    and accent stripping follow the tokenizer. Latin words and numbers depend on `units`:
      "word": one or more WordPieces (or one [UNK]) per word, exactly `tokenizer.tokenize(text)`
              (checked on all of CLUENER); the word is the label unit, so an entity boundary
              inside a word ("vs|ac米兰") cannot be expressed and is widened to the whole word.
      "char": one piece per character (see `_char_piece`) and every character its own label
              unit, so every character span maps to tokens and back exactly (CLUENER has 74
              gold entities that start or end inside a word).
    A character that normalizes to several (ǆ -> dz) gives several pieces of one unit.
    Known difference from FullTokenizer: lower-casing is per character, so a Greek word-final
    sigma becomes σ rather than ς.
    """
    if units not in UNITS:
        raise errors.AlbertError(f"unknown label units {units!r}: use one of {', '.join(UNITS)}")
    wordpiece = tokenizer.wordpiece_tokenizer
    char_pieces = {}  # (character, continues a word) -> piece, for this call
    tokens, starts, ends, unit_ids = [], [], [], []
    unit = -1
    for word in _basic_words(text, tokenizer.basic_tokenizer.do_lower_case):
        if units == "word":
            unit += 1
            for token, start, end in _word_pieces(word, wordpiece):
                tokens.append(token)
                starts.append(start)
                ends.append(end)
                unit_ids.append(unit)
            continue
        for position, (c, index) in enumerate(word):
            key = (c, position > 0)
            if key not in char_pieces:
                char_pieces[key] = _char_piece(tokenizer.vocab, wordpiece.unk_token, *key)
            if position == 0 or index != starts[-1]:  # a new source character: a new unit
                unit += 1
            tokens.append(char_pieces[key])
            starts.append(index)
            ends.append(index + 1)
            unit_ids.append(unit)

    first = [i for i, u in enumerate(unit_ids) if i == 0 or u != unit_ids[i - 1]]
    last = [i - 1 for i in first[1:]] + ([len(tokens) - 1] if tokens else [])
    starts, ends = np.asarray(starts, np.int32), np.asarray(ends, np.int32)
    first, last = np.asarray(first, np.int32), np.asarray(last, np.int32)
    return Encoding(
        tokens=tokens,
        token_ids=np.asarray(tokenizer.convert_tokens_to_ids(tokens), np.int32),
        starts=starts,
        ends=ends,
        unit_ids=np.asarray(unit_ids, np.int32),
        unit_first_token=first,
        unit_starts=starts[first],
        unit_ends=ends[last],
    )


def char_spans_to_unit_spans(encoding, entities):
    """Map character entities to unit entities -> (unit entities, widened, lost).

    An entity whose boundaries fall on unit boundaries maps exactly. One that starts or ends
    inside a unit (or on a character without a token) is widened to the units it overlaps and
    listed in `widened`; one that overlaps no unit at all is listed in `lost`.
    """
    unit_of_start = {int(s): u for u, s in enumerate(encoding.unit_starts)}
    unit_of_end = {int(e): u for u, e in enumerate(encoding.unit_ends)}
    spans, widened, lost = [], [], []
    for entity in entities:
        first, last = unit_of_start.get(entity.start), unit_of_end.get(entity.end)
        if first is None or last is None:
            overlapping = np.flatnonzero(
                (encoding.unit_starts < entity.end) & (encoding.unit_ends > entity.start)
            )
            if not len(overlapping):
                lost.append(entity)
                continue
            widened.append(entity)
            first, last = int(overlapping[0]), int(overlapping[-1])
        spans.append(Entity(entity.type, first, last + 1))
    return spans, widened, lost


def unit_spans_to_char_spans(encoding, spans):
    """Unit entities -> character entities (from the first unit's start to the last's end)."""
    return [
        Entity(s.type, int(encoding.unit_starts[s.start]), int(encoding.unit_ends[s.end - 1]))
        for s in spans
    ]


# ----------------------------------------------------------------------------- windows


def window_ranges(unit_start, size, stride):
    """Token ranges [start, end) of the windows of one sentence (`unit_start`: bool per token,
    True on the first token of a label unit).

    One window if the sentence has at most `size` tokens. Otherwise windows of `size` tokens
    start every `stride` tokens (so consecutive windows overlap by size - stride), each start
    moved back to the first token of a unit so that a unit's pieces stay together (unless one
    unit is longer than the stride). The last window ends at the sentence end.
    """
    n = len(unit_start)
    if not 1 <= stride <= size:
        raise errors.AlbertError(f"window stride {stride} must be between 1 and {size}")
    ranges = []
    start = 0
    while True:
        end = min(start + size, n)
        ranges.append((start, end))
        if end == n:
            return ranges
        next_start = start + stride
        while next_start > start + 1 and not unit_start[next_start]:
            next_start -= 1
        if not unit_start[next_start]:
            next_start = start + stride  # no unit starts within the stride: cut inside one
        start = next_start


# ----------------------------------------------------------------------------- features


@dataclasses.dataclass
class FeatureReport:
    """What feature conversion did to the sentences (print its summary with the read report)."""

    num_sentences: int = 0
    num_windows: int = 0
    split_sentences: int = 0  # sentences longer than one window
    longest_tokens: int = 0
    no_tokens: int = 0  # sentences whose text yields no token at all
    widened: list = dataclasses.field(default_factory=list)  # (source, entity): whole units
    lost: list = dataclasses.field(default_factory=list)  # (source, entity): not trained

    def summary(self):
        text = (
            f"{self.num_sentences} sentences -> {self.num_windows} windows; "
            f"{self.split_sentences} sentences longer than one window were split "
            f"(longest {self.longest_tokens} tokens)"
        )
        if self.no_tokens:
            text += f"; {self.no_tokens} sentences have no token (nothing predicted)"
        for what, cases in (("widened to whole units", self.widened), ("lost", self.lost)):
            if cases:
                first = " | ".join(f"{s}: {e.type} {e.start}-{e.end - 1}" for s, e in cases[:3])
                text += f"; {len(cases)} entities {what}, first: {first}"
        return text


@dataclasses.dataclass
class NerFeatures:
    """Model inputs, one row per window (unpadded int32 arrays), plus how to map back.

    Rows: input_ids ([CLS] pieces [SEP]), segment_ids (0), label_ids (the unit's tag id on its
    first piece, 0 elsewhere) and label_mask (1 on first pieces: the positions that are scored
    and predicted). `lengths` are the row lengths; row i is the window starting at token
    `window_start[i]` of example `example_index[i]`.
    """

    # classifier_data.make_dataset pads every one of these per token (no per-example column).
    TOKEN_COLUMNS = ("input_ids", "segment_ids", "label_ids", "label_mask")
    EXAMPLE_COLUMNS = ()

    input_ids: list
    segment_ids: list
    label_ids: list
    label_mask: list
    lengths: np.ndarray
    example_index: np.ndarray
    window_start: np.ndarray
    has_labels: np.ndarray  # bool per row: False for unlabelled examples
    encodings: list  # one Encoding per example
    tags: list
    scheme: str
    report: FeatureReport

    def __len__(self):
        return len(self.lengths)


def convert_examples_to_features(
    examples, tokenizer, tags, scheme="BIO", max_seq_length=128, window_stride=None, units="char"
):
    """Tokenize examples (`tokenize_with_offsets`) and cut them into windows.

    tags: the tag list (ids are positions). Windows hold at most max_seq_length - 2 tokens;
    window_stride (tokens between window starts) defaults to half a window, so each unit is
    predicted with at least a quarter window of context on both sides (except at the
    sentence ends). Entities that overlap after widening keep the longer one (counted).
    """
    scheme = check_scheme(scheme)
    size = max_seq_length - 2
    if size < 1:
        raise errors.AlbertError(f"max_seq_length={max_seq_length} leaves no room for tokens")
    stride = window_stride or max(size // 2, 1)
    tag_ids = {tag: i for i, tag in enumerate(tags)}
    cls_id = tokenizer.vocab[tokenization.CLS_TOKEN]
    sep_id = tokenizer.vocab[tokenization.SEP_TOKEN]
    report = FeatureReport(num_sentences=len(examples))
    rows = collections.defaultdict(list)
    encodings = []
    for index, example in enumerate(examples):
        encoding = tokenize_with_offsets(tokenizer, example.text, units)
        encodings.append(encoding)
        n = len(encoding.tokens)
        report.longest_tokens = max(report.longest_tokens, n)
        if n == 0:
            report.no_tokens += 1
            continue
        unit_tag_ids = np.zeros(encoding.num_units, np.int32)
        if example.entities is not None:
            spans, widened, lost = char_spans_to_unit_spans(encoding, example.entities)
            spans, dropped = resolve_overlaps(spans)
            report.widened += [(example.source, e) for e in widened]
            report.lost += [(example.source, e) for e in lost + dropped]
            for u, tag in enumerate(spans_to_tags(spans, encoding.num_units, scheme)):
                if tag not in tag_ids:
                    raise errors.AlbertError(
                        f"{example.source}: tag {tag} is not in the tag list (take the label "
                        "set from the training file or give every type in --labels)"
                    )
                unit_tag_ids[u] = tag_ids[tag]
        unit_start = np.zeros(n, bool)
        unit_start[encoding.unit_first_token] = True
        token_tags = np.where(unit_start, unit_tag_ids[encoding.unit_ids], 0)
        windows = window_ranges(unit_start, size, stride)
        report.split_sentences += len(windows) > 1
        for start, end in windows:
            rows["input_ids"].append(np.r_[cls_id, encoding.token_ids[start:end], sep_id])
            rows["label_ids"].append(np.r_[0, token_tags[start:end], 0])
            rows["label_mask"].append(np.r_[0, unit_start[start:end], 0])
            rows["example_index"].append(index)
            rows["window_start"].append(start)
            rows["has_labels"].append(example.entities is not None)
    report.num_windows = len(rows["input_ids"])

    def as_int32(key):
        return [np.asarray(row, np.int32) for row in rows[key]]

    input_ids = as_int32("input_ids")
    return NerFeatures(
        input_ids=input_ids,
        segment_ids=[np.zeros(len(row), np.int32) for row in input_ids],
        label_ids=as_int32("label_ids"),
        label_mask=as_int32("label_mask"),
        lengths=np.asarray([len(row) for row in input_ids], np.int32),
        example_index=np.asarray(rows["example_index"], np.int32),
        window_start=np.asarray(rows["window_start"], np.int32),
        has_labels=np.asarray(rows["has_labels"], bool),
        encodings=encodings,
        tags=list(tags),
        scheme=scheme,
        report=report,
    )


# ----------------------------------------------------------------------------- predictions


def merge_windows(features, window_predictions):
    """Per-window tag ids -> one tag id per label unit of each example (int32 arrays).

    window_predictions[i][p] is the tag id predicted at position p of row i (padded arrays are
    fine; only label_mask positions are read). Each unit takes its prediction from the window
    in which its first token is most central: the distance to the nearer window edge, where
    an edge at the sentence start or end does not count (no context is missing there). Ties
    go to the earlier window.
    """
    merged = [np.zeros(e.num_units, np.int32) for e in features.encodings]
    best = [np.full(e.num_units, -1, np.int64) for e in features.encodings]
    for row in range(len(features)):
        example = features.example_index[row]
        encoding = features.encodings[example]
        n = len(encoding.tokens)
        start = int(features.window_start[row])
        end = start + int(features.lengths[row]) - 2
        positions = np.flatnonzero(features.label_mask[row])
        tokens = start + positions - 1  # position 0 is [CLS]
        left = tokens - start if start > 0 else np.full(len(tokens), n)
        right = end - 1 - tokens if end < n else np.full(len(tokens), n)
        centrality = np.minimum(left, right)
        units = encoding.unit_ids[tokens]
        better = centrality > best[example][units]
        predicted = np.asarray(window_predictions[row])[positions]
        merged[example][units[better]] = predicted[better]
        best[example][units[better]] = centrality[better]
    return merged


def predict_entities(features, window_predictions):
    """Per-window tag ids -> predicted character entities of each example (lists of Entity).

    Windows are merged (`merge_windows`) and each example's unit tags read leniently, so a
    seam between windows never loses an entity.
    """
    entities = []
    merged = merge_windows(features, window_predictions)
    for encoding, unit_tags in zip(features.encodings, merged, strict=True):
        spans = extract_entities([features.tags[t] for t in unit_tags], features.scheme)
        entities.append(unit_spans_to_char_spans(encoding, spans))
    return entities


# ----------------------------------------------------------------------------- metrics


def _ratio(numerator, denominator):
    return numerator / denominator if denominator else 0.0


def entity_scores(gold, predicted):
    """Entity-level precision, recall, F1 and support, exactly as seqeval computes them.

    gold, predicted: one iterable of Entity per sentence (any consistent offsets). An entity
    is correct only if type, start and end all match. Returns seqeval's
    classification_report(output_dict=True) layout: {type: {"precision", "recall",
    "f1-score", "support"}} for every type in gold or predicted, plus "micro avg",
    "macro avg" and "weighted avg" (weighted by support). 0 where undefined.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    true_sets, pred_sets = collections.defaultdict(set), collections.defaultdict(set)
    for sentence, (gold_entities, pred_entities) in enumerate(zip(gold, predicted, strict=True)):
        for e in gold_entities:
            true_sets[e.type].add((sentence, e.start, e.end))
        for e in pred_entities:
            pred_sets[e.type].add((sentence, e.start, e.end))

    def row(tp, num_pred, num_true):
        precision, recall = _ratio(tp, num_pred), _ratio(tp, num_true)
        f1 = _ratio(2 * precision * recall, precision + recall)
        return {"precision": precision, "recall": recall, "f1-score": f1, "support": num_true}

    report = {}
    for entity_type in sorted(set(true_sets) | set(pred_sets)):
        t, p = true_sets[entity_type], pred_sets[entity_type]
        report[entity_type] = row(len(t & p), len(p), len(t))
    per_type = list(report.values())
    total = {
        key: sum(len(sets[k]) for k in sets) for key, sets in (("t", true_sets), ("p", pred_sets))
    }
    tp = sum(len(true_sets[k] & pred_sets[k]) for k in true_sets)
    report["micro avg"] = row(tp, total["p"], total["t"])
    metrics = ("precision", "recall", "f1-score")
    report["macro avg"] = {m: _mean([r[m] for r in per_type]) for m in metrics}
    report["macro avg"]["support"] = total["t"]
    if total["t"]:
        weights = [r["support"] for r in per_type]
        report["weighted avg"] = {m: _mean([r[m] for r in per_type], weights) for m in metrics}
    else:  # no gold entity at all: seqeval reports zeros (zero_division="warn")
        report["weighted avg"] = {m: 0.0 for m in metrics}
    report["weighted avg"]["support"] = total["t"]
    return report


def _mean(values, weights=None):
    if not values:
        return 0.0
    return float(np.average(values, weights=weights))


def tag_scores(y_true, y_pred, scheme="BIO", strict=False):
    """entity_scores of tag sequences (lists of tag lists), like seqeval's classification_report
    in default mode, or with mode="strict" and scheme IOB2/IOBES when strict=True."""
    if len(y_true) != len(y_pred) or any(
        len(t) != len(p) for t, p in zip(y_true, y_pred, strict=True)
    ):
        raise ValueError("y_true and y_pred must have the same sentences and lengths")
    return entity_scores(
        [extract_entities(t, scheme, strict) for t in y_true],
        [extract_entities(p, scheme, strict) for p in y_pred],
    )


def format_scores(report, digits=4):
    """A classification_report-style table of `entity_scores` output."""
    width = max([len("weighted avg")] + [len(name) for name in report])
    lines = [f"{'':>{width}}  precision     recall   f1-score    support", ""]
    for name, row in report.items():
        if name == "micro avg":
            lines.append("")
        values = "".join(f"{row[m]:>11.{digits}f}" for m in ("precision", "recall", "f1-score"))
        lines.append(f"{name:>{width}}{values}{row['support']:>11}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- writing


def _cluener_label(entities, text):
    label = {}
    for e in entities:
        mentions = label.setdefault(e.type, {})
        mentions.setdefault(text[e.start : e.end], []).append([e.start, e.end - 1])
    return label


def write_cluener(path, examples, predictions):
    """The CLUENER submission: `{"id": n, "label": {type: {entity: [[start, end]]}}}` per line.

    Offsets are inclusive. The id is the example's own (test.json) or else its position.
    """
    with open(path, "w", encoding="utf-8") as f:
        for index, (example, entities) in enumerate(zip(examples, predictions, strict=True)):
            row = {
                "id": example.id if example.id is not None else index,
                "label": _cluener_label(entities, example.text),
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_readable(path, examples, predictions):
    """`text<TAB>entity/type[start,end] ...` per sentence (inclusive offsets), for reading.

    Tabs and line breaks inside the text are shown as spaces (offsets are unchanged).
    """
    with open(path, "w", encoding="utf-8") as f:
        for example, entities in zip(examples, predictions, strict=True):
            text = "".join(" " if c in "\t\r\n" else c for c in example.text)
            shown = " ".join(
                f"{text[e.start : e.end]}/{e.type}[{e.start},{e.end - 1}]" for e in entities
            )
            f.write(f"{text}\t{shown}\n")


def line_tags(example, entities, scheme="BIO"):
    """One predicted tag per token line of a bio example: a line is in an entity when its
    characters overlap it (the first entity wins if two would claim a line)."""
    spans = []
    for e in entities:
        inside = [i for i, (a, b) in enumerate(example.line_spans) if a < e.end and b > e.start]
        if inside:
            spans.append(Entity(e.type, inside[0], inside[-1] + 1))
    kept, _ = resolve_overlaps(spans)
    return spans_to_tags(kept, len(example.line_spans), scheme)


def write_conll(path, source_path, examples, predictions, scheme="BIO"):
    """conlleval-style output of a bio file: every line of `source_path` with the predicted
    tag appended as one more space-separated column; blank lines are kept.

    Lines of a sentence the reader skipped (bad rows) get `O`. Returns how many lines that was.
    """
    tags_by_line = {}
    for example, entities in zip(examples, predictions, strict=True):
        for number, tag in zip(
            example.line_numbers, line_tags(example, entities, scheme), strict=True
        ):
            tags_by_line[number] = tag
    unpredicted = 0
    with open(path, "w", encoding="utf-8") as f:
        for number, line in classifier_data.read_lines(source_path):
            line = "<undecodable bytes>" if line is None else line
            if not line.strip() or line.startswith("-DOCSTART-"):
                f.write(line.strip() + "\n")  # sentence and document separators unchanged
                continue
            if number not in tags_by_line:
                unpredicted += 1
            f.write(f"{line} {tags_by_line.get(number, OUTSIDE)}\n")
    return unpredicted
