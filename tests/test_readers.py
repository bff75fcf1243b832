"""Tests for ptune.data.readers: parsing, and one-line errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptune.data import TaggedExample, TextExample, read_conll, read_examples, read_hf, read_table
from ptune.errors import PtuneError

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER


-DOCSTART- -X- -X- O
BRUSSELS NNP B-NP B-LOC
"""


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def one_line_error(excinfo: pytest.ExceptionInfo[PtuneError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- CoNLL -------------------------------------------------------------------------------


def test_conll_sentences_tags_and_docstart(tmp_path: Path) -> None:
    examples = read_conll(write(tmp_path, "data.txt", CONLL))
    assert examples == [
        TaggedExample(("EU", "rejects", "German"), ("B-ORG", "O", "B-MISC")),
        TaggedExample(("Peter", "Blackburn"), ("B-PER", "I-PER")),
        TaggedExample(("BRUSSELS",), ("B-LOC",)),
    ]


def test_conll_columns_can_be_chosen(tmp_path: Path) -> None:
    examples = read_conll(write(tmp_path, "data.txt", CONLL), token_column=1, tag_column=2)
    assert examples[0] == TaggedExample(("NNP", "VBZ", "JJ"), ("B-NP", "B-VP", "B-NP"))


def test_conll_single_column_is_untagged(tmp_path: Path) -> None:
    examples = read_conll(write(tmp_path, "data.conll", "Hello\nworld\n\nBye\n"))
    assert examples == [TaggedExample(("Hello", "world")), TaggedExample(("Bye",))]


def test_conll_crlf_and_bom(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbfa B-X\r\nb O\r\n\r\nc O\r\n"
    assert read_conll(write(tmp_path, "data.iob", data)) == [
        TaggedExample(("a", "b"), ("B-X", "O")),
        TaggedExample(("c",), ("O",)),
    ]


def test_conll_wrong_column_count_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "data.txt", CONLL.replace("Blackburn NNP I-NP I-PER", "Blackburn I-PER"))
    with pytest.raises(PtuneError) as excinfo:
        read_conll(path)
    assert one_line_error(excinfo) == (
        f"{path}:8: expected 4 columns like line 3, found 2 — fix or remove this line"
    )


def test_conll_missing_column(tmp_path: Path) -> None:
    with pytest.raises(PtuneError, match=r"data.txt:1: tag column 5 does not exist"):
        read_conll(write(tmp_path, "data.txt", "a O\n"), tag_column=5)


@pytest.mark.parametrize("content", ["", "\n\n", "-DOCSTART- -X- O\n\n"])
def test_conll_empty_file(tmp_path: Path, content: str) -> None:
    path = write(tmp_path, "data.txt", content)
    with pytest.raises(PtuneError, match="no sentences found") as excinfo:
        read_conll(path)
    assert str(path) in one_line_error(excinfo)


def test_conll_non_utf8_names_file_line_and_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "data.txt", b"Paris B-LOC\n\n" + "Zürich B-LOC\n".encode("latin-1"))
    with pytest.raises(PtuneError) as excinfo:
        read_conll(path)
    message = one_line_error(excinfo)
    assert message.startswith(f"{path}:3: not valid UTF-8")
    assert "iconv -f latin1 -t utf-8" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PtuneError, match="file not found"):
        read_conll(tmp_path / "nope.txt")
    with pytest.raises(PtuneError, match="file not found"):
        read_table(tmp_path / "nope.csv")


# --- CSV / TSV / JSONL ---------------------------------------------------------------------


def test_csv_with_pair_label_and_quoting(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "data.csv",
        "label,text,text_pair,extra\n"
        'positive,"Great, really",It is good,x\n'
        'negative,"Multi\nline",Bad,y\n',
    )
    assert read_table(path) == [
        TextExample("Great, really", "positive", "It is good"),
        TextExample("Multi\nline", "negative", "Bad"),
    ]


def test_tsv_without_label_column(tmp_path: Path) -> None:
    # TSV has no quoting: a lone double quote is part of the text.
    path = write(tmp_path, "data.tsv", 'sentence\tid\nsay "hi\t1\nbye\t2\n')
    assert read_table(path, text_field="sentence") == [TextExample('say "hi'), TextExample("bye")]


def test_jsonl_labels_become_strings(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": 0}, {"text": "b", "label": 1, "other": [1]}]
    path = write(tmp_path, "data.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_table(path) == [TextExample("a", "0"), TextExample("b", "1")]


def test_jsonl_with_text_pair_and_custom_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "data.json", '{"q": "who?", "a": "me", "y": "yes"}\n')
    assert read_table(path, text_field="q", text_pair_field="a", label_field="y") == [
        TextExample("who?", "yes", "me")
    ]


def test_json_array(tmp_path: Path) -> None:
    path = write(
        tmp_path, "data.json", '[{"text": "a", "label": "x"},\n {"text": "b", "label": "y"}]'
    )
    assert read_table(path) == [TextExample("a", "x"), TextExample("b", "y")]


def test_csv_missing_text_field_lists_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", "sentence,label\nhi,pos\n")
    with pytest.raises(PtuneError) as excinfo:
        read_table(path)
    message = one_line_error(excinfo)
    assert message.startswith(f"{path}: no 'text' column")
    assert "'sentence', 'label'" in message


def test_jsonl_missing_text_field_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", '{"text": "a"}\n{"sentence": "b"}\n')
    with pytest.raises(
        PtuneError, match=r"data.jsonl:2: no 'text' field; found fields: 'sentence'"
    ):
        read_table(path)


def test_jsonl_bad_json_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", '{"text": "a"}\n\n{"text": "b",}\n')
    with pytest.raises(PtuneError) as excinfo:
        read_table(path)
    assert one_line_error(excinfo).startswith(f"{path}:3: invalid JSON")


def test_jsonl_line_must_be_object(tmp_path: Path) -> None:
    with pytest.raises(PtuneError, match=r"data.jsonl:1: expected a JSON object"):
        read_table(write(tmp_path, "data.jsonl", '["a", "b"]\n'))


def test_empty_label_among_labels_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", "text,label\na,pos\nb,\nc,neg\n")
    with pytest.raises(PtuneError) as excinfo:
        read_table(path)
    message = one_line_error(excinfo)
    assert message.startswith(f"{path}:3: empty 'label' while other rows have one")


def test_all_empty_labels_mean_unlabelled(tmp_path: Path) -> None:
    assert read_table(write(tmp_path, "data.csv", "text,label\na,\nb,\n")) == [
        TextExample("a"),
        TextExample("b"),
    ]


def test_csv_wrong_field_count_names_line(tmp_path: Path) -> None:
    with pytest.raises(
        PtuneError, match=r"data.csv:3: expected 2 fields like the header on line 1, found 3"
    ):
        read_table(write(tmp_path, "data.csv", "text,label\na,pos\nb,neg,extra\n"))


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("data.csv", "", "empty file"),
        ("data.csv", "text,label\n", "has a header but no rows"),
        ("data.jsonl", "\n \n", "empty file"),
    ],
)
def test_table_empty_file(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(PtuneError, match=expected) as excinfo:
        read_table(path)
    assert str(path) in one_line_error(excinfo)


@pytest.mark.parametrize("name", ["data.csv", "data.jsonl"])
def test_table_non_utf8_names_line(tmp_path: Path, name: str) -> None:
    good = '{"text": "a"}\n' if name.endswith("jsonl") else "text\na\n"
    path = write(tmp_path, name, good.encode() + '{"text": "café"}\n'.encode("latin-1"))
    with pytest.raises(PtuneError) as excinfo:
        read_table(path)
    message = one_line_error(excinfo)
    line = 2 if name.endswith("jsonl") else 3
    assert message.startswith(f"{path}:{line}: not valid UTF-8")
    assert "iconv" in message


# --- read_examples dispatch ----------------------------------------------------------------


def test_read_examples_dispatches_by_suffix(tmp_path: Path) -> None:
    assert read_examples(write(tmp_path, "a.bio", "x O\n")) == [TaggedExample(("x",), ("O",))]
    assert read_examples(write(tmp_path, "a.tsv", "text\nhi\n")) == [TextExample("hi")]


def test_read_examples_unknown_suffix_lists_supported(tmp_path: Path) -> None:
    path = write(tmp_path, "data.xlsx", "x")
    with pytest.raises(PtuneError) as excinfo:
        read_examples(path)
    message = one_line_error(excinfo)
    assert ".conll" in message and ".jsonl" in message and "save_to_disk" in message


# --- Hugging Face datasets -----------------------------------------------------------------


@pytest.fixture(scope="module")
def datasets_module():  # type: ignore[no-untyped-def]
    return pytest.importorskip("datasets")


def test_hf_classification_maps_classlabels(tmp_path: Path, datasets_module) -> None:  # type: ignore[no-untyped-def]
    ds = datasets_module
    features = ds.Features(
        {"text": ds.Value("string"), "label": ds.ClassLabel(names=["negative", "positive"])}
    )
    data = ds.DatasetDict(
        {
            "train": ds.Dataset.from_dict(
                {"text": ["bad", "good"], "label": [0, 1]}, features=features
            ),
            "test": ds.Dataset.from_dict({"text": ["hidden"], "label": [-1]}, features=features),
        }
    )
    data.save_to_disk(str(tmp_path / "sst"))
    assert read_hf(tmp_path / "sst", split="train") == [
        TextExample("bad", "negative"),
        TextExample("good", "positive"),
    ]
    assert read_examples(tmp_path / "sst", split="test") == [TextExample("hidden")]
    with pytest.raises(PtuneError, match="no split 'valid'; available splits: train, test"):
        read_hf(tmp_path / "sst", split="valid")


def test_hf_dataset_folder_serves_each_role_by_split(tmp_path: Path, datasets_module) -> None:  # type: ignore[no-untyped-def]
    from ptune.data import from_files

    ds = datasets_module
    features = ds.Features({"text": ds.Value("string"), "label": ds.ClassLabel(names=["negative", "positive"])})
    ds.DatasetDict({
        "train": ds.Dataset.from_dict({"text": ["bad", "good"], "label": [0, 1]}, features=features),
        "validation": ds.Dataset.from_dict({"text": ["fine"], "label": [1]}, features=features),
        "test": ds.Dataset.from_dict({"text": ["awful"], "label": [0]}, features=features),
    }).save_to_disk(str(tmp_path / "sst"))
    folder = str(tmp_path / "sst")
    task = from_files(folder, folder, folder)
    assert [e.text for e in task.train] == ["bad", "good"]
    assert task.dev == [TextExample("fine", "positive")] and task.test == [TextExample("awful", "negative")]
    assert read_examples(f"{folder}@validation") == [TextExample("fine", "positive")]


def test_hf_tagging_single_saved_dataset(tmp_path: Path, datasets_module) -> None:  # type: ignore[no-untyped-def]
    ds = datasets_module
    features = ds.Features(
        {
            "tokens": ds.Sequence(ds.Value("string")),
            "ner_tags": ds.Sequence(ds.ClassLabel(names=["O", "B-PER", "I-PER"])),
        }
    )
    data = ds.Dataset.from_dict(
        {"tokens": [["Ada", "Lovelace", "wrote"], ["Hi"]], "ner_tags": [[1, 2, 0], [0]]},
        features=features,
    )
    data.save_to_disk(str(tmp_path / "ner"))
    assert read_examples(tmp_path / "ner") == [
        TaggedExample(("Ada", "Lovelace", "wrote"), ("B-PER", "I-PER", "O")),
        TaggedExample(("Hi",), ("O",)),
    ]


def test_hf_missing_text_field_lists_columns(tmp_path: Path, datasets_module) -> None:  # type: ignore[no-untyped-def]
    datasets_module.Dataset.from_dict({"sentence": ["a"]}).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(PtuneError, match=r"no 'text' column .* found columns: 'sentence'"):
        read_hf(tmp_path / "d", split="train")


# --- never any other exception ---------------------------------------------------------------

FUZZ = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Text made of the characters that matter to these formats, so parsing gets past the first line.
format_text = st.text(alphabet=st.sampled_from([*'ab O-DOCSTART\t\n\r,"{}[]:\\01', "é", "\x00"]))
file_content = st.one_of(st.binary(max_size=200), format_text.map(str.encode))


def parses_or_ptune_error(read, path: Path) -> None:  # type: ignore[no-untyped-def]
    try:
        read(path)
    except PtuneError as e:
        assert "\n" not in str(e)


@FUZZ
@given(content=file_content)
def test_conll_fuzz(tmp_path: Path, content: bytes) -> None:
    parses_or_ptune_error(read_conll, write(tmp_path, "fuzz.conll", content))


@FUZZ
@given(content=file_content)
def test_csv_fuzz(tmp_path: Path, content: bytes) -> None:
    parses_or_ptune_error(read_table, write(tmp_path, "fuzz.csv", b"text,label\n" + content))


@FUZZ
@given(
    content=st.one_of(
        file_content,
        st.lists(
            st.dictionaries(
                st.sampled_from(["text", "label", "text_pair", "x"]),
                st.one_of(
                    st.none(),
                    st.booleans(),
                    st.integers(),
                    st.text(max_size=5),
                    st.lists(st.integers()),
                ),
            ),
            max_size=4,
        ).map(lambda rows: "\n".join(json.dumps(r) for r in rows).encode()),
    )
)
def test_jsonl_fuzz(tmp_path: Path, content: bytes) -> None:
    parses_or_ptune_error(read_table, write(tmp_path, "fuzz.jsonl", content))
