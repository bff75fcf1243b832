"""docs/DATA.md runs as written: each section's files are written, its Python run and its ``ptune`` commands
run in a temporary folder (``ptune train`` with a tiny budget added). The hub section runs against a local
folder laid out as the hub's ``glue`` repository, through the same ``datasets.load_dataset(name, config)``."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from ptune.cli import main
from ptune.storage.prompt_files import read_header

DATA_MD = Path(__file__).resolve().parents[1] / "docs" / "DATA.md"
BUDGET = ["--epochs", "1", "--max-steps", "2", "--train-limit", "8", "--eval-limit", "8", "--batch-size", "4"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def sections() -> dict[str, str]:
    """The text of each ``## `` section of docs/DATA.md, by heading."""
    parts = re.split(r"^## (.+)$", DATA_MD.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def files(text: str) -> dict[str, str]:
    """The files a section shows: a line `` `name`: `` and the fenced block after it."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^`([\w./-]+)`:\n\n```\w*\n(.*?)^```", text,
                                                        re.MULTILINE | re.DOTALL)}


def blocks(text: str, language: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(text) if m.group(1) == language]


def commands(text: str) -> list[list[str]]:
    """The ``ptune ...`` lines of a section's bash blocks, as argument lists (comments dropped)."""
    lines = [line for block in blocks(text, "bash") for line in block.replace("\\\n", " ").splitlines()]
    return [shlex.split(line, comments=True)[1:] for line in lines if line.startswith("ptune ")]


def glue_folder(root: Path) -> Path:
    """A local dataset laid out as the hub's `glue` repository: a README naming the `sst2` configuration,
    Parquet files per split (written by `datasets`, so the label is a ClassLabel); test has no labels."""
    datasets = pytest.importorskip("datasets")
    folder = root / "hub" / "glue"
    features = datasets.Features({"sentence": datasets.Value("string"), "idx": datasets.Value("int32"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    splits = {"train": (["a delight", "a bore", "moving", "dreadful", "superb", "tedious"], [1, 0, 1, 0, 1, 0]),
              "validation": (["lovely", "awful"], [1, 0]), "test": (["fine", "bad"], [-1, -1])}
    for split, (texts, labels) in splits.items():
        (folder / "sst2").mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict({"sentence": texts, "idx": list(range(len(texts))), "label": labels},
                                   features=features).to_parquet(str(folder / "sst2" / f"{split}-00000-of-00001.parquet"))
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: sst2\n  data_files:\n" + "".join(
        f"  - split: {split}\n    path: sst2/{split}-*\n" for split in splits) + "---\n")
    return folder


def run(argv: list[str], capsys) -> str:
    if argv[0] == "train":
        argv = [*argv, *BUDGET]
    code = main(["-q", *argv])
    out, err = capsys.readouterr()
    assert code == 0, f"ptune {' '.join(argv)}: {err[-800:]}"
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder holding every file docs/DATA.md shows, shared by the sections (later ones use earlier runs)."""
    root = tmp_path_factory.mktemp("data-docs")
    for text in sections().values():
        for name, content in files(text).items():
            (root / name).write_text(content, encoding="utf-8")
    return root


@pytest.fixture
def folder(workdir, monkeypatch):
    """The shared folder as the working directory, with `datasets`' cache inside it."""
    monkeypatch.chdir(workdir)
    try:
        import datasets
    except ImportError:
        pass
    else:
        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(workdir / "cache"))
    return workdir


def test_the_sections_are_there():
    assert {"Column options", "Your own files", "What `ptune predict` reads", "A dataset on the hub",
            "A `DatasetDict` folder"} <= set(sections())
    assert all(commands(text) for name, text in sections().items() if name != "Column options")


def test_column_options_error_is_the_one_shown(folder, capsys):
    shown = blocks(sections()["Column options"], "text")[0].strip()
    assert main(["train", "--train", "reviews.csv"]) == 2
    assert capsys.readouterr().err.strip() == shown


def test_own_files(folder, capsys):
    reviews, tagging = commands(sections()["Your own files"])[:3], commands(sections()["Your own files"])[3:]
    for argv in reviews:
        out = run(argv, capsys)
        if argv[0] == "evaluate":
            assert json.loads(out)["examples"] == 2
        if argv[0] == "predict":
            assert [json.loads(line)["text"] for line in out.splitlines()] == [
                "an absolute joy from start to finish", "not worth the ticket"]
    header = read_header("runs/reviews/prompt.safetensors")
    assert header["task"]["source"] == {"columns": {"text": "review", "label": "stars"}}
    assert header["task"]["labels"] == ["bad", "good"]
    assert [argv[0] for argv in tagging] == ["train"]


def test_own_tagging_file(folder, capsys):
    for argv in commands(sections()["Your own files"])[3:]:
        run(argv, capsys)
    header = read_header("runs/ner/prompt.safetensors")
    assert header["task"]["kind"] == "tagging" and header["task"]["labels"] == ["O", "B-PER", "I-PER"]


def test_predict_inputs(folder, capsys):
    if not (folder / "runs" / "reviews" / "prompt.safetensors").exists():
        run(commands(sections()["Your own files"])[0], capsys)
    outputs = [run(argv, capsys) for argv in commands(sections()["What `ptune predict` reads"])]
    assert [json.loads(line)["text"] for line in outputs[0].splitlines()] == [
        '{"this": "line is a text too"}', "a quiet, lovely film"]
    assert len(outputs[1].splitlines()) == 2


def test_hub_dataset_through_load_dataset(folder, capsys):
    glue = glue_folder(folder)
    argvs = commands(sections()["A dataset on the hub"])
    assert argvs[0][:3] == ["train", "--dataset", "glue"]
    for argv in argvs:
        out = run([str(glue) if arg == "glue" else arg for arg in argv], capsys)
    assert json.loads(out)["examples"] == 2  # the validation split
    header = read_header("runs/sst2/prompt.safetensors")
    assert header["task"]["labels"] == ["negative", "positive"] and header["task"]["name"] == "glue/sst2"
    assert header["task"]["source"]["config"] == "sst2"


def test_datasetdict_folder(folder, capsys):
    pytest.importorskip("datasets")
    text = sections()["A `DatasetDict` folder"]
    exec(compile(blocks(text, "python")[0], "<docs/DATA.md>", "exec"), {})  # noqa: S102 - the documented code
    outputs = [run(argv, capsys) for argv in commands(text)]
    assert [json.loads(out)["examples"] for out in outputs[1:]] == [2, 2]
    assert json.loads(outputs[1])["data"].endswith("my_dataset@test")
    results = json.loads(Path("runs/mine/results.json").read_text())
    assert results["dev"] and results["test"]  # the validation and test splits served dev and test
