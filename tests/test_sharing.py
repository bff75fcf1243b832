"""Sharing prompts as adapters are shared: `ptune save-pretrained` (the prompt file and a model card whose YAML
the hub reads), loading such a folder or a hub repo id (from the hub cache, offline), and `ptune push` with the
hub client stood in for (the hub cannot be reached from the tests)."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

import ptune
from ptune.cli import main
from ptune.errors import PtuneError
from ptune.interop.hub import save_pretrained
from ptune.storage.prompt_files import read_header

FIXTURE = Path(__file__).parent / "fixtures" / "legacy" / "rt_deep_top2_minilm.safetensors"
SECTIONS = ["## Method", "## Results", "## Training command", "## Usage"]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def front_matter(text: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, text[:200]
    return yaml.safe_load(match.group(1))


def test_card_of_a_committed_fixture_prompt(tmp_path):
    folder = save_pretrained(FIXTURE, tmp_path / "shared", repo_id="someone/rt-deep")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "prompt.safetensors"]
    assert (folder / "prompt.safetensors").read_bytes() == FIXTURE.read_bytes()
    text = (folder / "README.md").read_text()
    header = read_header(FIXTURE)
    meta = front_matter(text)
    assert meta == ModelCard.load(folder / "README.md").data.to_dict()  # the hub's own reader agrees
    assert meta["library_name"] == "ptune"
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"  # the embedded name `minilm`
    assert {"ptune", "prompt-tuning", "p-tuning-v2", "text-classification"} <= set(meta["tags"])
    assert meta["datasets"] == ["cornell-movie-review-data/rotten_tomatoes"]
    assert meta["metrics"] == [key[len("dev_"):] for key in header["metrics"] if key.startswith("dev_")]
    positions = [text.index(section) for section in SECTIONS]
    assert positions == sorted(positions)
    share = 100 * header["trainable_params"] / header["backbone_params"]
    assert f"{header['trainable_params']:,} ({share:.3f}% of the backbone" in text
    assert f"| dev | accuracy | {header['metrics']['dev_accuracy']:.4f} |" in text
    assert "Not recorded" in text  # the fixture was copied alone: no run folder, no command
    assert 'ptune.load_prompt("someone/rt-deep")' in text and "ptune predict someone/rt-deep --text" in text


def test_the_cards_python_usage_runs_on_the_saved_folder(tmp_path, capsys):
    folder = save_pretrained(FIXTURE, tmp_path / "shared")
    code = re.search(r"```python\n(.*?)```", (folder / "README.md").read_text(), re.DOTALL).group(1)
    assert f'ptune.load_prompt("{folder}")' in code
    exec(compile(code, "<model card>", "exec"), {"__name__": "card"})  # noqa: S102 - the card's example is the test
    printed = capsys.readouterr().out
    assert printed.strip() in ("['negative']", "['positive']")


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory):
    """`ptune train --seeds 1 2` on small files of one's own, through the CLI (the command goes into results.json)."""
    root = tmp_path_factory.mktemp("seeds")
    rows = [("a wonderful moving film", "positive"), ("a dull tired mess", "negative"), ("great fun", "positive"),
            ("boring and long", "negative")]
    for name, count in (("train", 4), ("dev", 2), ("test", 2)):
        lines = ["text,label"] + [f"{text},{label}" for text, label in (rows * 4)[: count * 4]]
        (root / f"{name}.csv").write_text("\n".join(lines) + "\n")
    out = root / "run"
    assert main(["-q", "train", "--train", str(root / "train.csv"), "--dev", str(root / "dev.csv"), "--test",
                 str(root / "test.csv"), "--method", "prompt", "--length", "2", "--epochs", "1", "--max-steps", "2",
                 "--batch-size", "8", "--seeds", "1", "2", "--out", str(out)]) == 0
    return out


def test_card_of_a_seed_run_shows_every_seed_and_the_command(seeds_run, tmp_path, capsys):
    assert main(["save-pretrained", str(seeds_run / "seed-2"), str(tmp_path / "shared")]) == 0
    capsys.readouterr()
    text = (tmp_path / "shared" / "README.md").read_text()
    meta = front_matter(text)
    assert "datasets" not in meta and meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    summary = json.loads((seeds_run / "results.json").read_text())
    for split in ("dev", "test"):
        for metric, scores in summary[split].items():
            row = (f"| {split} | {metric} | {scores['mean']:.4f} | {scores['std']:.4f} | "
                   f"{scores['values']['seed-1']:.4f} | {scores['values']['seed-2']:.4f} |")
            assert row in text, row
    assert "this repo holds `seed-2`'s prompt" in text
    seed_results = json.loads((seeds_run / "seed-2" / "results.json").read_text())
    assert seed_results["seed"] == 2 and seed_results["command"].startswith("ptune -q train --train ")
    assert f"```bash\n{seed_results['command']}\n```" in text and "--seeds 1 2" in seed_results["command"]
    assert f"| test | accuracy | {seed_results['test']['accuracy']:.4f} |" in text


def test_a_multi_seed_folder_is_refused_with_what_to_give(seeds_run, tmp_path, capsys):
    assert main(["save-pretrained", str(seeds_run), str(tmp_path / "shared")]) == 2
    assert "seed-N" in error_line(capsys) and not (tmp_path / "shared").exists()


def test_an_existing_folder_is_kept_unless_overwrite(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["save-pretrained", str(FIXTURE), str(other), "--overwrite"]) == 2
    assert "notes.txt" in error_line(capsys) and sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    shared = save_pretrained(FIXTURE, tmp_path / "shared")
    before = (shared / "README.md").read_text()
    assert main(["save-pretrained", str(FIXTURE), str(shared), "--repo", "someone/again"]) == 2
    assert "--overwrite" in error_line(capsys) and (shared / "README.md").read_text() == before
    assert main(["save-pretrained", str(FIXTURE), str(shared), "--repo", "someone/again", "--overwrite"]) == 0
    assert "someone/again" in (shared / "README.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "shared"]  # no temporary folder left


def test_load_prompt_and_predict_take_a_folder(tmp_path, minilm, capsys):
    shared = save_pretrained(FIXTURE, tmp_path / "shared")
    texts = ["a triumph", "a mess"]
    examples = [ptune.TextExample(t) for t in texts]
    expected = ptune.predict(ptune.load_prompt(FIXTURE, minilm), examples)
    assert ptune.predict(ptune.load_prompt(shared, minilm), examples) == expected
    assert main(["predict", str(shared), "--text", *texts]) == 0
    assert [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()] == expected
    assert main(["inspect", str(shared), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["file_bytes"] == FIXTURE.stat().st_size
    assert shown["tensors_sha256"] == read_header(FIXTURE)["tensors_sha256"]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A hub cache holding the model repo someone/rt-deep (as snapshot_download leaves it), the hub offline."""
    import huggingface_hub.constants as constants

    cache, commit = tmp_path / "hub", "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--someone--rt-deep"
    save_pretrained(FIXTURE, tmp_path / "shared", repo_id="someone/rt-deep")
    shutil.copytree(tmp_path / "shared", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return repo / "snapshots" / commit


def test_a_hub_repo_id_loads_from_the_cache(hub_cache, tmp_path, minilm, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # someone/rt-deep is no local path here
    model = ptune.load_prompt("someone/rt-deep", minilm)
    assert model.header["tensors_sha256"] == read_header(FIXTURE)["tensors_sha256"]
    assert main(["predict", "someone/rt-deep", "--text", "a triumph"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] in ("negative", "positive")
    data = tmp_path / "labelled.csv"
    data.write_text("text,label\nloved it,positive\nhated it,negative\n")
    assert main(["evaluate", "someone/rt-deep", "--data", str(data)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 2 and result["prompt"] == str(hub_cache / "prompt.safetensors")


def test_a_repo_id_not_in_the_cache_is_one_line_offline(hub_cache, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "someone/absent", "--text", "hi"]) == 2
    err = error_line(capsys)
    assert "someone/absent" in err and "cache" in err and "HF_HUB_OFFLINE" in err
    with pytest.raises(PtuneError, match="someone/absent: not in the local hub cache"):
        ptune.load_prompt("someone/absent")


class FakeHub:
    """Stands in for huggingface_hub.HfApi: records the calls and the files an upload would send."""

    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **options):
        FakeHub.calls.append(("create_repo", repo_id, options))

    def upload_folder(self, *, repo_id, folder_path, allow_patterns, **options):
        files = sorted(p.name for p in Path(folder_path).iterdir()
                       if any(fnmatch.fnmatch(p.name, pattern) for pattern in allow_patterns))
        FakeHub.calls.append(("upload_folder", repo_id, files, options))
        return type("Commit", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()


def test_push_creates_the_repo_and_uploads_the_shared_files(tmp_path, capsys, monkeypatch):
    import huggingface_hub

    shared = save_pretrained(FIXTURE, tmp_path / "shared", repo_id="someone/rt-deep")
    (shared / "notes.txt").write_text("kept local")  # not part of the shared prompt
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    FakeHub.calls = []
    assert main(["push", str(shared), "--repo", "someone/rt-deep", "--private"]) == 0
    assert json.loads(capsys.readouterr().out)["url"] == "https://huggingface.co/someone/rt-deep/commit/abc"
    (create, repo, options), (upload, repo_again, files, upload_options) = FakeHub.calls
    assert (create, repo, upload, repo_again) == ("create_repo", "someone/rt-deep", "upload_folder", "someone/rt-deep")
    assert options == {"private": True, "exist_ok": True, "repo_type": "model"}
    assert files == ["README.md", "prompt.safetensors"] and upload_options["repo_type"] == "model"


def test_push_refusals_are_one_line(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants as constants

    shared = save_pretrained(FIXTURE, tmp_path / "shared")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the real client, with the hub switched off
    assert main(["push", str(shared), "--repo", "someone/rt-deep"]) == 2
    assert "HF_HUB_OFFLINE" in error_line(capsys)
    (shared / "README.md").unlink()
    assert main(["push", str(shared), "--repo", "someone/rt-deep"]) == 2
    assert "README.md" in error_line(capsys)
    assert main(["push", str(shared), "--repo", "not a repo"]) == 2
    assert "user/name" in error_line(capsys)
