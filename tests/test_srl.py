"""Tests for ptune.data.srl: the OntoNotes fixture read back span for span, and one-line errors.

The fixture is AllenNLP 0.9.0's `nt_6401.gold_conll`; the package is installed only for it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ptune.data.examples import TaggedExample
from ptune.data.srl import read_srl, read_srl_sentences, spans
from ptune.errors import PtuneError
from ptune.tasks.metrics import entity_f1


def _fixture() -> Path | None:
    spec = importlib.util.find_spec("allennlp")  # finds the folder; never imports allennlp
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "tests/fixtures/data/srl/nt_6401.gold_conll"
    return path if path.is_file() else None


FIXTURE = _fixture()
needs_fixture = pytest.mark.skipif(
    FIXTURE is None,
    reason="allennlp 0.9.0's tests/fixtures/data/srl/nt_6401.gold_conll is not installed",
)

# A CoNLL-2012 file of one sentence with two predicates (know, care): rows on lines 2-6.
CONLL2012 = """\
#begin document (test/doc); part 000
test/doc 0 0 I    PRP (TOP(S(NP*) -    -  - - * (ARG0*) *       -
test/doc 0 1 know VBP (VP*        know 01 - - * (V*)    *       -
test/doc 0 2 you  PRP (S(NP*)     -    -  - - * (ARG1*  (ARG0*) -
test/doc 0 3 care VBP (VP*)))     care 01 - - * *)      (V*)    -
test/doc 0 4 .    .   *))         -    -  - - * *       *       -

#end document
"""

# CoNLL-2005 words/props pasted together: word, predicate lemma or -, one column per predicate.
CONLL2005 = """\
The    -    (A1*    (A0*
man    -    *)      *)
,      -    *       *
he     -    (A0*)   *
said   say  (V*)    *
,      -    *       *
would  -    (C-A1*  (AM-MOD*)
come   come *)      (V*)
.      -    *       *

Rain   -    *
fell   fall (V*)
"""


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def raw_sentences(path: Path) -> list[list[list[str]]]:
    """The fixture's sentences as rows of fields, read without ptune."""
    sentences: list[list[list[str]]] = [[]]
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            if sentences[-1]:
                sentences.append([])
        else:
            sentences[-1].append(line.split())
    return [s for s in sentences if s]


def to_brackets(tags: tuple[str, ...]) -> list[str]:
    """BIO tags back to CoNLL bracket cells: `(LABEL*` on B-, `)` on a span's last word."""
    cells = []
    for i, tag in enumerate(tags):
        following = tags[i + 1] if i + 1 < len(tags) else "O"
        cell = f"({tag[2:]}*" if tag.startswith("B-") else "*"
        if tag != "O" and not following.startswith("I-"):
            cell += ")"
        cells.append(cell)
    return cells


def error(excinfo: pytest.ExceptionInfo[PtuneError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "—" in message  # one line, with the fix after the dash
    return message


# The fixture -----------------------------------------------------------------------------------


@needs_fixture
def test_fixture_counts():
    sentences = read_srl_sentences(FIXTURE)
    assert len(sentences) == 37
    assert sum(len(frames) for frames in sentences) == 80
    assert [len(frames) for frames in sentences[:5]] == [0, 1, 2, 3, 2]
    assert len(read_srl(FIXTURE)) == 80
    assert read_srl(FIXTURE, "conll2012") == read_srl(FIXTURE)


@needs_fixture
def test_fixture_round_trips_every_argument_column():
    sentences = read_srl_sentences(FIXTURE)
    raw = raw_sentences(FIXTURE)
    assert len(raw) == len(sentences)
    for rows, frames in zip(raw, sentences, strict=True):
        predicates = [i for i, fields in enumerate(rows) if fields[7] != "-"]
        assert [e.predicate for e in frames] == predicates
        for k, example in enumerate(frames):
            assert example.tokens == tuple(fields[3] for fields in rows)
            assert to_brackets(example.tags) == [fields[11 + k] for fields in rows]


@needs_fixture
def test_fixture_predicate_word_is_the_verb():
    for example in read_srl(FIXTURE):
        assert example.tags[example.predicate] == "B-V"
        assert example.tags.count("B-V") == 1


@needs_fixture
def test_fixture_hand_checked_sentence():
    # "My dear friend , I know that you are doing well spiritually ." (lines 21-33)
    know, doing = read_srl_sentences(FIXTURE)[2]
    assert know.tokens[know.predicate] == "know" and know.predicate == 5
    assert know.tags == (
        "B-ARGM-DIS", "I-ARGM-DIS", "I-ARGM-DIS", "O", "B-ARG0", "B-V",
        "B-ARG1", "I-ARG1", "I-ARG1", "I-ARG1", "I-ARG1", "I-ARG1", "O",
    )  # fmt: skip
    assert spans(know.tags) == {("ARGM-DIS", 0, 2), ("ARG0", 4, 4), ("V", 5, 5), ("ARG1", 6, 11)}
    assert doing.tokens[doing.predicate] == "doing" and doing.predicate == 9
    # Two one-word ARGM-MNR spans side by side stay two spans.
    assert spans(doing.tags) == {
        ("ARG0", 7, 7), ("V", 9, 9), ("ARGM-MNR", 10, 10), ("ARGM-MNR", 11, 11),
    }  # fmt: skip


@needs_fixture
def test_fixture_reference_labels_kept():
    labels = {tag for example in read_srl(FIXTURE) for tag in example.tags}
    assert {"B-R-ARG0", "B-R-ARG1", "B-R-ARG2", "B-ARGM-ADV", "I-ARG1"} <= labels


@needs_fixture
def test_fixture_scores_with_entity_f1():
    gold = [example.tags for example in read_srl(FIXTURE)]
    assert entity_f1(gold, gold)["f1"] == 1.0
    dropped = [tuple("O" if t.endswith("ARG0") else t for t in tags) for tags in gold]
    result = entity_f1(gold, dropped)
    assert result["precision"] == 1.0 and result["recall"] < 1.0


# Small files ------------------------------------------------------------------------------------


def test_conll2012_small_file(tmp_path):
    path = write(tmp_path, "doc.gold_conll", CONLL2012)
    assert read_srl(path) == [
        TaggedExample(
            ("I", "know", "you", "care", "."), ("B-ARG0", "B-V", "B-ARG1", "I-ARG1", "O"), 1
        ),
        TaggedExample(("I", "know", "you", "care", "."), ("O", "O", "B-ARG0", "B-V", "O"), 3),
    ]


def test_conll2012_detected_by_contents(tmp_path):
    rows = "".join(line + "\n" for line in CONLL2012.splitlines() if not line.startswith("#"))
    path = write(tmp_path, "doc.txt", rows)
    assert read_srl(path) == read_srl(write(tmp_path, "doc.gold_conll", CONLL2012))


def test_conll2005_small_file(tmp_path):
    path = write(tmp_path, "test.wsj.props", CONLL2005)
    said, come, fell = read_srl(path)
    assert said.predicate == 4 and come.predicate == 7 and fell.predicate == 1
    assert said.tags == ("B-A1", "I-A1", "O", "B-A0", "B-V", "O", "B-C-A1", "I-C-A1", "O")
    assert come.tags == ("B-A0", "I-A0", "O", "O", "O", "O", "B-AM-MOD", "B-V", "O")
    assert fell == TaggedExample(("Rain", "fell"), ("O", "B-V"), 1)
    assert spans(said.tags) == {("A1", 0, 1), ("A0", 3, 3), ("V", 4, 4), ("C-A1", 6, 7)}
    assert read_srl(path, "conll2005") == [said, come, fell]


def test_conll2005_predicate_column(tmp_path):
    with_pos = "\n".join(
        f"{line.split()[0]} XX {' '.join(line.split()[1:])}" if line.strip() else ""
        for line in CONLL2005.splitlines()
    )
    path = write(tmp_path, "pos.txt", with_pos + "\n")
    expected = read_srl(write(tmp_path, "plain.txt", CONLL2005))
    assert read_srl(path, predicate_column=2) == expected
    with pytest.raises(PtuneError, match="pos.txt:1: .*predicate"):
        read_srl(path)  # column 1 holds POS tags, all taken for predicates


def test_spans_reads_like_seqeval():
    assert spans(("B-C-ARG1", "I-C-ARG1", "O", "I-ARG0", "B-V")) == {
        ("C-ARG1", 0, 1), ("ARG0", 3, 3), ("V", 4, 4),
    }  # fmt: skip
    assert spans(("O", "O")) == set()


# Errors name the file and the line -------------------------------------------------------------


def mutate(line_number: int, column: int, value: str | None) -> str:
    """CONLL2012 with one cell of one line replaced (None: removed)."""
    lines = CONLL2012.splitlines()
    fields = lines[line_number - 1].split()
    if value is None:
        del fields[column]
    else:
        fields[column] = value
    lines[line_number - 1] = " ".join(fields)
    return "\n".join(lines) + "\n"


def test_missing_argument_column(tmp_path):
    rows = [
        " ".join(line.split()[:12] + line.split()[13:]) if line.startswith("test/") else line
        for line in CONLL2012.splitlines()
    ]
    path = write(tmp_path, "missing.gold_conll", "\n".join(rows) + "\n")
    with pytest.raises(PtuneError) as excinfo:
        read_srl(path)
    message = error(excinfo)
    assert "missing.gold_conll:2:" in message
    assert "2 predicates" in message and "1 argument column" in message


def test_short_row(tmp_path):
    path = write(tmp_path, "short.gold_conll", mutate(4, 12, None))
    with pytest.raises(PtuneError) as excinfo:
        read_srl(path)
    message = error(excinfo)
    assert "short.gold_conll:4:" in message and "expected 14 columns" in message


def test_short_first_row(tmp_path):
    path = write(tmp_path, "short.gold_conll", mutate(2, 12, None))
    with pytest.raises(PtuneError, match=r"short\.gold_conll:2: expected 14 columns like line 3"):
        read_srl(path)


def test_unclosed_bracket(tmp_path):
    path = write(tmp_path, "open.gold_conll", mutate(5, 11, "*"))
    with pytest.raises(PtuneError) as excinfo:
        read_srl(path)
    message = error(excinfo)
    assert "open.gold_conll:4:" in message and "(ARG1*" in message and "line 6" in message


def test_close_without_open(tmp_path):
    path = write(tmp_path, "close.gold_conll", mutate(3, 12, "*)"))
    with pytest.raises(PtuneError) as excinfo:
        read_srl(path)
    assert "close.gold_conll:3:" in error(excinfo) and "closes no span" in str(excinfo.value)


def test_nested_brackets(tmp_path):
    path = write(tmp_path, "nested.gold_conll", mutate(5, 11, "(ARGM-TMP*)"))
    with pytest.raises(PtuneError) as excinfo:
        read_srl(path)
    assert "nested.gold_conll:5:" in error(excinfo) and "line 4" in str(excinfo.value)


def test_not_a_bracket(tmp_path):
    path = write(tmp_path, "cell.gold_conll", mutate(6, 12, "ARG1"))
    with pytest.raises(PtuneError) as excinfo:
        read_srl(path)
    assert "cell.gold_conll:6:" in error(excinfo) and "'ARG1'" in str(excinfo.value)


def test_argument_columns_out_of_order(tmp_path):
    rows = []
    for line in CONLL2012.splitlines():
        fields = line.split()
        if line.startswith("test/"):
            fields[11], fields[12] = fields[12], fields[11]
        rows.append(" ".join(fields) if line.startswith("test/") else line)
    path = write(tmp_path, "order.gold_conll", "\n".join(rows) + "\n")
    with pytest.raises(PtuneError) as excinfo:
        read_srl(path)
    assert "order.gold_conll:3:" in error(excinfo) and "line 5" in str(excinfo.value)


def test_not_utf8(tmp_path):
    content = CONLL2012.encode("utf-8").replace(b" care ", b" caf\xe9 ")
    path = write(tmp_path, "latin1.gold_conll", content)
    with pytest.raises(PtuneError) as excinfo:
        read_srl(path)
    assert "latin1.gold_conll:5:" in error(excinfo) and "UTF-8" in str(excinfo.value)


def test_empty_file(tmp_path):
    # An empty file has no line to name: the message names the file and says it is empty.
    path = write(tmp_path, "empty.gold_conll", b"")
    with pytest.raises(PtuneError) as excinfo:
        read_srl(path)
    assert f"{path}: empty file" in error(excinfo)


def test_only_document_markers(tmp_path):
    path = write(tmp_path, "markers.gold_conll", "#begin document (x); part 000\n\n#end document\n")
    with pytest.raises(PtuneError, match="markers.gold_conll: no sentences found"):
        read_srl(path)


def test_missing_file(tmp_path):
    with pytest.raises(PtuneError, match="file not found"):
        read_srl(tmp_path / "absent.gold_conll")


def test_unknown_format(tmp_path):
    path = write(tmp_path, "doc.gold_conll", CONLL2012)
    with pytest.raises(PtuneError, match="unknown SRL format 'conll2009'"):
        read_srl(path, "conll2009")  # type: ignore[arg-type]


def test_predicate_column_refused_for_conll2012(tmp_path):
    path = write(tmp_path, "doc.gold_conll", CONLL2012)
    with pytest.raises(PtuneError, match="predicate_column applies to CoNLL-2005"):
        read_srl(path, predicate_column=2)
