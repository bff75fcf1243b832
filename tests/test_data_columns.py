"""Data as users have it: the column options on CSV, TSV, JSONL and Parquet files and on `datasets` datasets
(a DatasetDict folder, a hub-style repository through ``load_dataset(name, config)``), ClassLabel names, split
names, the errors that name the file, the column, the columns there are and the option; and ``ptune predict``'s
input formats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from ptune.cli import build_parser, main
from ptune.cli.inputs import input_format, read_rows
from ptune.data import Columns, TaggedExample, TextExample, from_dataset, from_files, read_examples
from ptune.data.hf import read_hf
from ptune.errors import PtuneError

FORMATS = ["csv", "tsv", "jsonl", "parquet"]
ROLE_OPTIONS = {"text": "--text-column", "text_pair": "--text-pair-column", "label": "--label-column",
                "tokens": "--tokens-column", "tags": "--tags-column"}


def write_table(path: Path, rows: list[dict]) -> Path:
    """`rows` as a table of the format `path`'s suffix names; lists become space-separated in CSV/TSV."""
    fmt = path.suffix[1:]
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif fmt == "parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, list(rows[0]), delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: " ".join(v) if isinstance(v, list) else v for k, v in row.items()} for row in rows)
        path.write_text(buffer.getvalue())
    return path


REVIEWS = [{"review": "a gripping thriller", "other": "seen twice", "stars": "good"},
           {"review": "dull and long", "other": "left early", "stars": "bad"}]
SENTENCES = [{"words": ["Ada", "Lovelace", "wrote"], "labels": ["B-PER", "I-PER", "O"]},
             {"words": ["Paris", "sleeps"], "labels": ["B-LOC", "O"]}]


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# -- the column options on every file format ----------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_text_columns_in_every_format(tmp_path, fmt):
    path = write_table(tmp_path / f"data.{fmt}", REVIEWS)
    columns = Columns(text="review", text_pair="other", label="stars")
    assert read_examples(path, columns=columns) == [TextExample("a gripping thriller", "good", "seen twice"),
                                                     TextExample("dull and long", "bad", "left early")]


@pytest.mark.parametrize("fmt", FORMATS)
def test_tagging_columns_in_every_format(tmp_path, fmt):
    path = write_table(tmp_path / f"data.{fmt}", SENTENCES)
    task = from_files(path, columns=Columns(tokens="words", tags="labels"))
    assert task.kind == "tagging" and task.metric == "entity_f1"
    assert task.train == [TaggedExample(("Ada", "Lovelace", "wrote"), ("B-PER", "I-PER", "O")),
                          TaggedExample(("Paris", "sleeps"), ("B-LOC", "O"))]
    assert task.source == {"columns": {"tokens": "words", "tags": "labels"}}


@pytest.mark.parametrize("role", list(ROLE_OPTIONS))
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_missing_named_column_names_file_column_columns_and_option(tmp_path, fmt, role):
    path = write_table(tmp_path / f"data.{fmt}", REVIEWS)
    with pytest.raises(PtuneError) as excinfo:
        read_examples(path, columns=Columns(**{role: "nope"}))
    message = one_line(excinfo)
    assert message.startswith(str(path)) and "'nope'" in message and ROLE_OPTIONS[role] in message
    assert "'review', 'other', 'stars'" in message


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_text_column_asks_for_the_option(tmp_path, fmt):
    path = write_table(tmp_path / f"data.{fmt}", REVIEWS)
    with pytest.raises(PtuneError) as excinfo:
        read_examples(path)
    message = one_line(excinfo)
    assert message.startswith(f"{path}: no 'text' column") and "--text-column" in message and "'review'" in message


def test_defaults_still_read_text_and_label(tmp_path):
    path = write_table(tmp_path / "data.parquet", [{"text": "hi", "label": 1}, {"text": "yo", "label": 0}])
    assert read_examples(path) == [TextExample("hi", "1"), TextExample("yo", "0")]


def test_a_jsonl_row_without_the_named_field_names_its_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"review": "good", "stars": "5"}\n{"body": "bad", "stars": "1"}\n')
    with pytest.raises(PtuneError, match=r"data.jsonl:2: no 'review' field \(from --text-column\); found fields: "
                                         r"'body', 'stars'"):
        read_examples(path, columns=Columns(text="review", label="stars"))


def test_tokens_and_tags_must_pair_up(tmp_path):
    path = write_table(tmp_path / "data.csv", [{"words": "a b c", "labels": "O O"}])
    with pytest.raises(PtuneError, match=r"data.csv:2: 3 tokens in 'words' but 2 tags in 'labels'"):
        read_examples(path, columns=Columns(tokens="words", tags="labels"))


def test_conll_columns_are_numbers(tmp_path):
    path = tmp_path / "data.conll"
    path.write_text("EU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\n")
    assert read_examples(path, columns=Columns(tokens="0", tags="1")) == [
        TaggedExample(("EU", "rejects"), ("NNP", "VBZ")), TaggedExample(("Peter",), ("NNP",))]
    with pytest.raises(PtuneError, match="a CoNLL file holds tokens and tags, not --text-column"):
        read_examples(path, columns=Columns(text="review"))
    with pytest.raises(PtuneError, match="--tags-column 'pos' — a CoNLL file's columns are numbers"):
        read_examples(path, columns=Columns(tags="pos"))


# -- datasets: ClassLabel names, split names, folders and the hub's call --------------------------------------
@pytest.fixture(scope="module")
def datasets():
    return pytest.importorskip("datasets")


def sentiment(datasets, splits: dict[str, tuple[list, list]], names=("negative", "positive", "neutral")):
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=list(names))})
    return datasets.DatasetDict({split: datasets.Dataset.from_dict({"sentence": texts, "label": labels},
                                                                   features=features)
                                 for split, (texts, labels) in splits.items()})


def test_parquet_from_datasets_keeps_classlabel_names(tmp_path, datasets):
    path = tmp_path / "train.parquet"
    sentiment(datasets, {"train": (["fine", "bad"], [1, 0])})["train"].to_parquet(str(path))
    assert read_examples(path, columns=Columns(text="sentence")) == [TextExample("fine", "positive"),
                                                                     TextExample("bad", "negative")]


def test_a_datasetdict_folder_serves_train_dev_and_test(tmp_path, datasets):
    sentiment(datasets, {"train": (["good", "bad", "great"], [1, 0, 1]), "validation": (["fine"], [1]),
                         "test": (["awful"], [0]), "extra": (["x"], [2])}).save_to_disk(str(tmp_path / "d"))
    task = from_files(tmp_path / "d", columns=Columns(text="sentence"))  # --train FOLDER alone
    assert [e.text for e in task.train] == ["good", "bad", "great"]
    assert task.dev == [TextExample("fine", "positive")] and task.test == [TextExample("awful", "negative")]
    assert task.labels == ["negative", "positive", "neutral"]  # the ClassLabel's names, in id order
    assert task.source == {"dataset": str((tmp_path / "d").resolve()), "columns": {"text": "sentence"}}
    only_train = from_files(tmp_path / "d", tmp_path / "d", columns=Columns(text="sentence"))
    assert only_train.dev == task.dev and only_train.test == []


@pytest.mark.parametrize("dev_name", ["validation", "dev", "valid", "val"])
def test_dev_split_names(tmp_path, datasets, dev_name):
    sentiment(datasets, {"train": (["good", "bad"], [1, 0]), dev_name: (["fine"], [1])}).save_to_disk(
        str(tmp_path / "d"))
    task = from_dataset(tmp_path / "d", columns=Columns(text="sentence"))
    assert task.dev == [TextExample("fine", "positive")] and task.test == [] and task.name == "d"
    assert read_hf(tmp_path / "d", split="dev", columns=Columns(text="sentence")) == task.dev
    assert read_examples(f"{tmp_path / 'd'}@validation", columns=Columns(text="sentence")) == task.dev


def test_a_missing_split_lists_the_splits(tmp_path, datasets):
    sentiment(datasets, {"train": (["good"], [1])}).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(PtuneError, match="no split 'test'; available splits: train — pick one of these"):
        read_hf(tmp_path / "d", split="test", columns=Columns(text="sentence"))
    sentiment(datasets, {"test": (["good"], [1])}).save_to_disk(str(tmp_path / "t"))
    with pytest.raises(PtuneError, match="no train split to train on; splits read: test"):
        from_dataset(tmp_path / "t", columns=Columns(text="sentence"))


def test_an_unlabelled_test_split_is_left_out(tmp_path, datasets, caplog):
    sentiment(datasets, {"train": (["good", "bad"], [1, 0]), "test": (["hidden"], [-1])}).save_to_disk(
        str(tmp_path / "d"))
    with caplog.at_level("INFO", logger="ptune"):
        task = from_dataset(tmp_path / "d", columns=Columns(text="sentence"))
    assert task.test == [] and "the test split has no labels" in caplog.text


def test_tags_take_classlabel_names(tmp_path, datasets):
    features = datasets.Features({"words": datasets.Sequence(datasets.Value("string")),
                                  "marks": datasets.Sequence(datasets.ClassLabel(names=["O", "B-LOC", "B-PER"]))})
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"words": [["Ada", "left"], ["Rome"]], "marks": [[2, 0], [1]]}, features=features)}).save_to_disk(
        str(tmp_path / "ner"))
    task = from_dataset(tmp_path / "ner", columns=Columns(tokens="words", tags="marks"))
    assert task.labels == ["O", "B-LOC", "B-PER"]
    assert task.train == [TaggedExample(("Ada", "left"), ("B-PER", "O")), TaggedExample(("Rome",), ("B-LOC",))]


def test_a_dataset_column_error_names_the_split_and_option(tmp_path, datasets):
    sentiment(datasets, {"train": (["good"], [1])}).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(PtuneError) as excinfo:
        from_dataset(tmp_path / "d", columns=Columns(text="sentence", label="stars"))
    assert one_line(excinfo).startswith(f"{tmp_path / 'd'}@train: no 'stars' column (from --label-column); "
                                        "found columns: 'sentence', 'label' — pass --label-column")


def hub_repository(root: Path, datasets) -> Path:
    """A local folder laid out as a hub dataset repository: a README naming configuration `sst2`, Parquet splits."""
    folder = root / "glue"
    (folder / "sst2").mkdir(parents=True)
    data = sentiment(datasets, {"train": (["a delight", "a bore"], [1, 0]), "validation": (["lovely"], [1]),
                                "test": (["hidden"], [-1])}, names=("negative", "positive"))
    for split, dataset in data.items():
        dataset.to_parquet(str(folder / "sst2" / f"{split}-00000-of-00001.parquet"))
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: sst2\n  data_files:\n" + "".join(
        f"  - split: {split}\n    path: sst2/{split}-*\n" for split in data) + "---\n")
    return folder


def test_a_hub_dataset_is_read_by_load_dataset_with_its_config(tmp_path, datasets, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    calls = []
    real = datasets.load_dataset

    def recording(*args, **kwargs):  # records the call and runs the real loader
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", recording)
    folder = hub_repository(tmp_path, datasets)
    task = from_dataset(str(folder), "sst2", columns=Columns(text="sentence"))
    assert calls == [(str(folder), "sst2")]  # the hub's call: load_dataset("glue", "sst2")
    assert task.name == "glue/sst2" and task.labels == ["negative", "positive"]  # glue + sst2: the named task
    assert task.train == [TextExample("a delight", "positive"), TextExample("a bore", "negative")]
    assert task.dev == [TextExample("lovely", "positive")] and task.test == []
    assert task.source == {"dataset": str(folder), "config": "sst2", "columns": {"text": "sentence"}}
    with pytest.raises(PtuneError, match="BuilderConfig 'sst3' not found.* — pass --dataset-config"):
        from_dataset(str(folder), "sst3", columns=Columns(text="sentence"))


# -- the command line ---------------------------------------------------------------------------------------
def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def reviews(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_table(tmp_path / "reviews.csv", REVIEWS * 2)
    return tmp_path


@pytest.mark.parametrize(("argv", "expected"), [
    (["--train", "reviews.csv"], ["reviews.csv: no 'text' column", "'review', 'other', 'stars'", "--text-column"]),
    (["--train", "reviews.csv", "--text-column", "body"], ["reviews.csv: no 'body' column", "--text-column"]),
    (["--train", "reviews.csv", "--text-column", "review", "--label-column", "score"],
     ["reviews.csv: no 'score' column", "'review', 'other', 'stars'", "--label-column"]),
    (["--train", "reviews.csv", "--tokens-column", "words"], ["no 'words' column", "--tokens-column"]),
    (["--dataset-config", "sst2"], ["--dataset NAME"]),
    (["--dataset", "d", "--train", "reviews.csv"], ["--dataset NAME or --task/--train, not both"]),
    (["--task", "rotten_tomatoes", "--text-column", "review"], ["--text-column: column options are for your own"]),
    (["--task", "rotten_tomatoes", "conll2003", "--text-column", "review"], ["--*-column"]),
])
def test_train_errors_exit_2_with_one_line(reviews, capsys, argv, expected):
    assert main(["train", *argv]) == 2
    message = error_line(capsys)
    assert all(part in message for part in expected), message


def test_options_from_a_config_file_and_the_resume_record(reviews):
    from ptune.cli.options import read_config
    from ptune.cli.train import _data_spec, _task_from_spec, load_task

    (reviews / "run.json").write_text(json.dumps({"train": "reviews.csv", "text_column": "review",
                                                  "label_column": "stars"}))
    args = build_parser().parse_args(["train", "--text-pair-column", "other"])
    config = read_config("run.json")
    task = load_task(args, config)
    assert task.train[0] == TextExample("a gripping thriller", "good", "seen twice")
    spec = _data_spec(args, config, task.metric)
    assert spec["columns"] == {"text": "review", "text_pair": "other", "label": "stars"}
    assert _task_from_spec(spec).train == task.train


def test_dataset_resume_record(tmp_path, datasets):
    from ptune.cli.train import _data_spec, _task_from_spec

    sentiment(datasets, {"train": (["good", "bad"], [1, 0])}).save_to_disk(str(tmp_path / "d"))
    args = build_parser().parse_args(["train", "--dataset", str(tmp_path / "d"), "--text-column", "sentence"])
    spec = _data_spec(args, {}, "accuracy")
    assert spec["dataset"] == str((tmp_path / "d").resolve()) and spec["columns"] == {"text": "sentence"}
    assert _task_from_spec(spec).labels == ["negative", "positive", "neutral"]


@pytest.fixture(scope="module")
def prompt(tmp_path_factory):
    """A prompt trained for one step on a CSV with its own column names."""
    folder = tmp_path_factory.mktemp("columns-run")
    write_table(folder / "reviews.csv", REVIEWS * 2)
    out = folder / "run"
    assert main(["-q", "train", "--train", str(folder / "reviews.csv"), "--text-column", "review",
                 "--label-column", "stars", "--method", "prompt", "--length", "2", "--epochs", "1",
                 "--max-steps", "1", "--batch-size", "4", "--out", str(out)]) == 0
    return out / "prompt.safetensors"


def test_evaluate_uses_the_recorded_columns_and_options_win(prompt, tmp_path, capsys):
    capsys.readouterr()
    same = write_table(tmp_path / "same.tsv", REVIEWS)
    assert main(["evaluate", str(prompt), "--data", str(same)]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 2
    other = write_table(tmp_path / "other.jsonl", [{"body": "fine", "y": "good"}])
    assert main(["evaluate", str(prompt), "--data", str(other), "--text-column", "body", "--label-column", "y"]) == 0
    assert json.loads(capsys.readouterr().out)["examples"] == 1
    assert main(["evaluate", str(prompt), "--data", str(other)]) == 2
    assert "--text-column" in error_line(capsys)


def test_evaluate_a_dataset_split(prompt, tmp_path, capsys, datasets):
    capsys.readouterr()
    rows = {"review": ["fine", "poor", "grand"], "stars": ["good", "bad", "good"]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows),
                          "dev": datasets.Dataset.from_dict({k: v[:2] for k, v in rows.items()})}).save_to_disk(
        str(tmp_path / "d"))
    assert main(["evaluate", str(prompt), "--dataset", str(tmp_path / "d"), "--split", "dev"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 2 and result["data"] == f"{tmp_path / 'd'}@dev"
    assert main(["evaluate", str(prompt), "--dataset", str(tmp_path / "d")]) == 2
    assert "no split 'test'; available splits: train, dev" in error_line(capsys)
    assert main(["evaluate", str(prompt), "--dataset-config", "x"]) == 2
    assert "give --dataset NAME" in error_line(capsys)


def test_evaluate_without_data_on_a_custom_prompt(prompt, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(prompt)]) == 2
    message = error_line(capsys)
    assert "trained on your own data" in message and "--data FILE" in message and "unknown task" not in message


def test_predict_reads_csv_rows_not_the_header(prompt, tmp_path, capsys):
    capsys.readouterr()
    data = write_table(tmp_path / "new.csv", [{"text": "moving", "label": "good"}, {"text": "a chore", "label": ""}])
    assert main(["predict", str(prompt), "--input", str(data)]) == 0
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == ["moving", "a chore"]
    forced = tmp_path / "new.dat"
    forced.write_text("id\tbody\n1\tsplendid\n")
    assert main(["predict", str(prompt), "--input", str(forced), "--format", "tsv", "--text-column", "body"]) == 0
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == ["splendid"]


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("empty.csv", "review,stars\nfine,good\n,bad\n", "empty.csv:3: 'review' is empty"),
    ("empty.jsonl", '{"text": "fine"}\n{"text": "  "}\n', "empty.jsonl:2: 'text' is empty"),
    ("broken.jsonl", '{"text": "fine",}\n', "broken.jsonl:1: invalid JSON"),
    ("body.csv", "body\nfine\n", "found fields: 'body' — pass --text-column"),
])
def test_predict_refuses_bad_input_with_file_and_line(prompt, tmp_path, capsys, name, content, expected):
    capsys.readouterr()
    (tmp_path / name).write_text(content)
    assert main(["predict", str(prompt), "--input", str(tmp_path / name)]) == 2
    assert expected in error_line(capsys)


def test_predict_refuses_an_empty_text_option(prompt, capsys):
    capsys.readouterr()
    assert main(["predict", str(prompt), "--text", "fine", " "]) == 2
    assert "--text: 'text' is empty" in error_line(capsys)


# -- predict's input formats without a model ------------------------------------------------------------------
@pytest.mark.parametrize(("path", "fmt"), [("a.jsonl", "jsonl"), ("a.json", "jsonl"), ("a.csv", "csv"),
                                           ("a.TSV", "tsv"), ("a.txt", "text"), ("a.dat", "jsonl"), (None, "jsonl"),
                                           ("-", "jsonl")])
def test_input_format_from_the_suffix(path, fmt):
    assert input_format(path) == fmt
    assert input_format(path, "csv") == "csv"


def test_input_rows(tmp_path, monkeypatch):
    text = tmp_path / "a.txt"
    text.write_text('{"text": "not parsed"}\n\nsecond line\n')
    assert read_rows(str(text)) == [(f"{text}:1", {"text": '{"text": "not parsed"}'}),
                                    (f"{text}:3", {"text": "second line"})]
    tagged = tmp_path / "a.tsv"
    tagged.write_text("words\nAda left\n")
    assert read_rows(str(tagged), columns=Columns(tokens="words")) == [
        (f"{tagged}:2", {"words": "Ada left", "tokens": ["Ada", "left"]})]
    monkeypatch.setattr("sys.stdin", io.StringIO('{"review": "good"}\nplain text\n"a string"\n["Ada", "left"]\n'))
    assert [row for _, row in read_rows("-", columns=Columns(text="review"))] == [
        {"review": "good", "text": "good"}, {"text": "plain text"}, {"text": "a string"}, {"tokens": ["Ada", "left"]}]
    with pytest.raises(PtuneError, match="a.tsv:2: no 'review' column \\(from --text-column\\); found columns: 'words'"):
        read_rows(str(tagged), "csv", Columns(text="review"))
