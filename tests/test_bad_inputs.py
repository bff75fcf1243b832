"""Bad input at every boundary a user reaches: each command's bounded options, files of the wrong kind, damaged
prompt files, config files and server bodies. A refused command prints exactly one line on stderr naming the
option or file, exits with status 2, shows no traceback and changes nothing already written; the server
answers a JSON error with a 4xx status. Most cases are refused before any model loads, so they run in
process in well under a second. Free-form values are drawn with hypothesis (see also test_hostile.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from ptune.cli import main
from ptune.config import MethodConfig
from ptune.model.prompt_model import PromptModel
from ptune.storage.prompt_files import save_prompt

FUZZ = settings(max_examples=int(os.environ.get("PTUNE_FUZZ_EXAMPLES", "40")), deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
P = "{ws}/prompt.safetensors"


@pytest.fixture(scope="module")
def ws(minilm, tiny_bert_dir, tmp_path_factory):
    """A folder of inputs, good and bad: a trained prompt on minilm, damaged prompt files, data files, config
    files, backbone folders and a finished run; {tiny_bert} is another backbone."""
    from transformers import BartConfig, T5Config

    root = tmp_path_factory.mktemp("ws")
    model = PromptModel(minilm, MethodConfig(method="deep", length=2, layers="top:2"), ["negative", "positive"])
    model.initialise(seed=0)
    prompt = root / "prompt.safetensors"
    save_prompt(prompt, model, task_name="reviews", metric="accuracy")
    good = prompt.read_bytes()
    (root / "truncated.safetensors").write_bytes(good[: len(good) // 2])
    (root / "empty.safetensors").write_bytes(b"")
    (root / "notes.txt").write_text("not a prompt\n")
    save_file({"x": torch.zeros(2)}, str(root / "noheader.safetensors"))
    save_file({"x": torch.zeros(2)}, str(root / "badjson.safetensors"), metadata={"ptune": "{not json"})
    with safe_open(str(prompt), framework="pt") as handle:
        header = json.loads(handle.metadata()["ptune"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    header["backbone"]["name"] = str(root / "moved-away-backbone")
    save_file(tensors, str(root / "elsewhere.safetensors"), metadata={"ptune": json.dumps(header)})
    files = {
        "train.csv": "text,label\ngood film,positive\nbad film,negative\nfine film,positive\n",
        "unlabelled.csv": "text\ngood film\nbad film\n",
        "empty.csv": "",
        "empty_text.csv": 'text,label\n"",positive\nbad film,negative\n',
        "empty_text.jsonl": '{"text": ""}\n',
        "spaces.jsonl": '{"text": "   "}\n',
        "existing.txt": "keep me\n",
        "cfg_list.json": "[1, 2]",
        "cfg_bad.json": "{",
        "cfg_unknown.json": '{"learning_rate": 0.1}',
        "cfg_batch0.json": '{"batch_size": 0}',
        "cfg_warmup.json": '{"warmup_ratio": 2.5}',
        "cfg_lr_text.json": '{"lr": "fast"}',
        "cfg_max_length.json": '{"max_length": -4}',
    }
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (root / "cfg_binary.json").write_bytes(b"\xff\xfe\x00{")
    for folder in ("folder", "folder.jsonl", "no-config", "run", "cwd", "prompts"):
        (root / folder).mkdir()
    (root / "no-config" / "README.md").write_text("weights went missing\n")
    T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2).save_pretrained(root / "t5")
    BartConfig(vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
               decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32).save_pretrained(root / "bart")
    (root / "run" / "prompt.safetensors").write_bytes(good)
    (root / "run" / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (root / "prompts" / "aaa.safetensors").write_bytes(b"corrupt")
    (root / "prompts" / "sentiment.safetensors").write_bytes(good)
    return {"ws": str(root), "tiny_bert": str(tiny_bert_dir)}


def snapshot(root: Path) -> dict:
    """Every path under ``root`` with its bytes' hash and mtime (folders: None)."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            if p.is_file() else None for p in sorted(root.rglob("*"))}


def fill(texts, ws: dict) -> list[str]:
    """``texts`` with {ws} and {tiny_bert} replaced by their paths (other braces, as in templates, stay)."""
    out = []
    for text in texts:
        for key, value in ws.items():
            text = text.replace("{" + key + "}", value)
        out.append(text)
    return out


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit:  # an argparse error that escaped main
        code = exit.code
    return code, capsys.readouterr().err


def refused(argv: list[str], capsys, fragments=()) -> str:
    """Run ``argv``; assert exit code 2, one line on stderr holding every fragment, no traceback."""
    code, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, f"exit code {code}: {err}"
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{err}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in: {lines[0]}"
    return lines[0]


def case(fragments, *argv):
    return pytest.param(list(argv), (fragments,) if isinstance(fragments, str) else fragments,
                        id=" ".join(argv).replace("{ws}/", ""))


T = ("train", "--train", "{ws}/train.csv", "--out", "{ws}/new-run")
E = ("evaluate", P)
R = ("predict", P)
G = ("generate", P, "--text", "hi")
B = ("benchmark",)
S = ("serve", "{ws}/prompts")
PR = ("probe",)

CASES = [
    # train: method options
    case(("--length", "0"), *T, "--length", "0"),
    case(("--length", "-2"), *T, "--length=-2"),
    case(("--length", "-1"), *T, "--method", "ptuning", "--length=-1"),
    case(("--reparam-hidden", "0"), *T, "--reparam-hidden", "0"),
    case(("--max-length", "0"), *T, "--max-length", "0"),
    case(("--max-length", "-1"), *T, "--max-length=-1"),
    case(("100000", "512"), *T, "--max-length", "100000"),
    case(("--prefix-std", "0"), *T, "--prefix-std", "0"),
    case(("--prefix-std", "nan"), *T, "--prefix-std", "nan"),
    case("--method", *T, "--method", "bogus"),
    case("--init", *T, "--init", "bogus"),
    case("--encoder", *T, "--encoder", "gru"),
    case("--head", *T, "--head", "mlp"),
    case("--pool", *T, "--pool", "mean"),
    case("--prefix-dropout", *T, "--prefix-dropout", "token"),
    case("top:0", *T, "--layers", "top:0"),
    case("banana", *T, "--layers", "banana"),
    case("top:99", *T, "--layers", "top:99"),
    case("[P]*0", *T, "--method", "prompt", "--template", "[P]*0 {text}"),
    case("{text}", *T, "--method", "prompt", "--template", "[P] no slot"),
    case("[P]", *T, "--method", "deep", "--template", "[P] {text}"),
    case("verbalizer", *T, "--head", "verbalizer", "--verbalizer", "nonsense"),
    case("--head verbalizer", *T, "--verbalizer", "negative=bad;positive=good"),
    case("tune_backbone", *T, "--tune-backbone"),
    case("peft_layout", *T, "--method", "finetune", "--peft-layout"),
    # train: training options
    case(("--epochs", "0"), *T, "--epochs", "0"),
    case(("--epochs", "-1"), *T, "--epochs=-1"),
    case(("--max-steps", "0"), *T, "--max-steps", "0"),
    case(("--batch-size", "0"), *T, "--batch-size", "0"),
    case(("--batch-size", "abc"), *T, "--batch-size", "abc"),
    case(("--batch-size", "2.5"), *T, "--batch-size", "2.5"),
    case(("--lr", "0"), *T, "--lr", "0"),
    case(("--lr", "-0.1"), *T, "--lr=-0.1"),
    case(("--lr", "nan"), *T, "--lr", "nan"),
    case(("--lr", "inf"), *T, "--lr", "inf"),
    case(("--weight-decay", "-1"), *T, "--weight-decay=-1"),
    case(("--warmup-ratio", "1.5"), *T, "--warmup-ratio", "1.5"),
    case(("--warmup-ratio", "-0.1"), *T, "--warmup-ratio=-0.1"),
    case(("--max-grad-norm", "0"), *T, "--max-grad-norm", "0"),
    case(("--patience", "-1"), *T, "--patience=-1"),
    case(("--seed", "-1"), *T, "--seed=-1"),
    case(("--seed", "99999999999"), *T, "--seed", "99999999999"),
    case(("--train-limit", "0"), *T, "--train-limit", "0"),
    case(("--eval-limit", "0"), *T, "--eval-limit", "0"),
    case(("--cache-mb", "-5"), *T, "--cache-mb=-5"),
    case(("--checkpoint-every", "-1"), *T, "--checkpoint-every=-1"),
    case(("--log-every", "0"), *T, "--log-every", "0"),
    case(("report_to", "comet"), *T, "--report-to", "comet"),
    case("--scheduler", *T, "--scheduler", "exponential"),
    case("--precision", *T, "--precision", "fp8"),
    case("--kind", *T, "--kind", "ranking"),
    # train: files and folders
    case("missing.csv", "train", "--train", "{ws}/missing.csv"),
    case("[validation].csv", "train", "--train", "{ws}/[validation].csv"),
    case("folder", "train", "--train", "{ws}/folder"),
    case("empty.csv", "train", "--train", "{ws}/empty.csv"),
    case("binary.csv", "train", "--train", "{ws}/binary.csv"),
    case(("unlabelled.csv", "label"), "train", "--train", "{ws}/unlabelled.csv"),
    case(("unlabelled.csv", "label", "--dev"), *T, "--dev", "{ws}/unlabelled.csv"),
    case(("unlabelled.csv", "label", "--test"), *T, "--test", "{ws}/unlabelled.csv"),
    case("empty_text.csv", "train", "--train", "{ws}/empty_text.csv"),
    case("prompt.safetensors", "train", "--train", P),
    case("missing.json", *T, "--config", "{ws}/missing.json"),
    case(("folder", "config"), *T, "--config", "{ws}/folder"),
    case(("cfg_list.json", "object"), *T, "--config", "{ws}/cfg_list.json"),
    case(("cfg_bad.json", "JSON"), *T, "--config", "{ws}/cfg_bad.json"),
    case(("cfg_unknown.json", "learning_rate"), *T, "--config", "{ws}/cfg_unknown.json"),
    case(("cfg_batch0.json", "batch_size"), *T, "--config", "{ws}/cfg_batch0.json"),
    case(("cfg_warmup.json", "warmup_ratio", "2.5"), *T, "--config", "{ws}/cfg_warmup.json"),
    case(("cfg_lr_text.json", "lr"), *T, "--config", "{ws}/cfg_lr_text.json"),
    case(("cfg_max_length.json", "max_length"), *T, "--config", "{ws}/cfg_max_length.json"),
    case("cfg_binary.json", *T, "--config", "{ws}/cfg_binary.json"),
    case(("existing.txt", "--out"), "train", "--train", "{ws}/train.csv", "--out", "{ws}/existing.txt"),
    case(("run", "finished run"), "train", "--train", "{ws}/train.csv", "--out", "{ws}/run"),
    case(("folder", "checkpoint"), "train", "--resume", "{ws}/folder"),
    case("missing-run", "train", "--resume", "{ws}/missing-run"),
    case("truncated.safetensors", *T, "--init-from", "{ws}/truncated.safetensors"),
    case(("no-config", "config.json"), *T, "--backbone", "{ws}/no-config"),
    # encoder-decoders load (issue 14); these folders hold a config and no weights
    case(("t5", "model.safetensors"), *T, "--backbone", "{ws}/t5"),
    case(("bart", "model.safetensors"), *T, "--backbone", "{ws}/bart"),
    case("missing-backbone", *T, "--backbone", "{ws}/missing-backbone"),
    case("bogus", "train", "--task", "bogus"),
    case("--dataset", "train", "--dataset-config", "sst2"),
    case("unrecognized", *T, "--bogus-flag"),
    # sweep (each trial a train run: train's options are checked the same way)
    case(("--trials", "0"), "sweep", *T[1:], "--trials", "0"),
    case(("--timeout", "-1"), "sweep", *T[1:], "--timeout=-1"),
    case(("--startup-trials", "-1"), "sweep", *T[1:], "--startup-trials=-1"),
    case(("--storage", "notaurl"), "sweep", *T[1:], "--storage", "notaurl"),
    case(("--batch-size", "0"), "sweep", *T[1:], "--batch-size", "0"),
    case(("--lr", "fast"), "sweep", *T[1:], "--lr", "fast"),
    case(("--length", "0"), "sweep", *T[1:], "--length", "0"),
    case(("existing.txt", "--out"), "sweep", "--train", "{ws}/train.csv", "--out", "{ws}/existing.txt"),
    # evaluate
    case(("--batch-size", "0"), *E, "--data", "{ws}/train.csv", "--batch-size", "0"),
    case(("--batch-size", "-3"), *E, "--data", "{ws}/train.csv", "--batch-size=-3"),
    case("--split", *E, "--split", "validation"),
    case("--combine", *E, "--combine", "median"),
    case("missing.csv", *E, "--data", "{ws}/missing.csv"),
    case(("unlabelled.csv", "label"), *E, "--data", "{ws}/unlabelled.csv"),
    case("binary.csv", *E, "--data", "{ws}/binary.csv"),
    case("empty.csv", *E, "--data", "{ws}/empty.csv"),
    case("empty_text.csv", *E, "--data", "{ws}/empty_text.csv"),
    case("garbage", *E, "--data", "{ws}/train.csv", "--label-map", "garbage"),
    case("bogus", *E, "--data", "{ws}/train.csv", "--metric", "bogus"),
    case("--data", *E),
    case("truncated.safetensors", "evaluate", "{ws}/truncated.safetensors", "--data", "{ws}/train.csv"),
    case("noheader.safetensors", "evaluate", "{ws}/noheader.safetensors", "--data", "{ws}/train.csv"),
    case("prompt file", "evaluate"),
    case("missing.safetensors", "evaluate", "--ensemble", P, "{ws}/missing.safetensors", "--data", "{ws}/train.csv"),
    # predict
    case(("--batch-size", "0"), *R, "--text", "hi", "--batch-size", "0"),
    case(("--top-k", "0"), *R, "--text", "hi", "--top-k", "0"),
    case(("--predicate", "-1"), *R, "--text", "hi", "--predicate=-1"),
    case("empty", *R, "--text", ""),
    case("empty", *R, "--text", "   "),
    case(("empty_text.jsonl", "empty"), *R, "--input", "{ws}/empty_text.jsonl"),
    case(("spaces.jsonl", "empty"), *R, "--input", "{ws}/spaces.jsonl"),
    case("missing.jsonl", *R, "--input", "{ws}/missing.jsonl"),
    case("folder", *R, "--input", "{ws}/folder"),
    case("binary.csv", *R, "--input", "{ws}/binary.csv"),
    case(("empty.csv", "empty file"), *R, "--input", "{ws}/empty.csv"),
    case("--format", *R, "--input", "{ws}/train.csv", "--format", "xml"),
    case(("--output", "out.txt"), *R, "--text", "hi", "--output", "{ws}/out.txt"),
    case(("--output", "folder.jsonl"), *R, "--text", "hi", "--output", "{ws}/folder.jsonl"),
    case("missing.safetensors", "predict", "{ws}/missing.safetensors", "--text", "hi"),
    case(("folder", "prompt file"), "predict", "{ws}/folder", "--text", "hi"),
    case("notes.txt", "predict", "{ws}/notes.txt", "--text", "hi"),
    case("empty.safetensors", "predict", "{ws}/empty.safetensors", "--text", "hi"),
    case("badjson.safetensors", "predict", "{ws}/badjson.safetensors", "--text", "hi"),
    case(("moved-away-backbone", "--backbone"), "predict", "{ws}/elsewhere.safetensors", "--text", "hi"),
    case(("prompt.safetensors", "minilm"), *R, "--backbone", "{tiny_bert}", "--text", "hi"),
    case(("no-config", "config.json"), *R, "--backbone", "{ws}/no-config", "--text", "hi"),
    case(("someone/absent", "cache"), "predict", "someone/absent", "--text", "hi"),
    # generate
    case(("--max-new-tokens", "0"), *G, "--max-new-tokens", "0"),
    case(("--max-new-tokens", "-1"), *G, "--max-new-tokens=-1"),
    case(("--min-new-tokens", "-1"), *G, "--min-new-tokens=-1"),
    case(("--temperature", "-1"), *G, "--temperature=-1"),
    case(("--temperature", "nan"), *G, "--temperature", "nan"),
    case(("--top-p", "0"), *G, "--top-p", "0"),
    case(("--top-p", "1.5"), *G, "--top-p", "1.5"),
    case(("--top-k", "0"), *G, "--top-k", "0"),
    case(("--seed", "-1"), *G, "--seed=-1"),
    case(("--repetition-penalty", "0"), *G, "--repetition-penalty", "0"),
    case(("folder", "prompt file"), "generate", "{ws}/folder", "--text", "hi"),
    case("missing.safetensors", "generate", "{ws}/missing.safetensors", "--text", "hi"),
    case("truncated.safetensors", "generate", "{ws}/truncated.safetensors", "--text", "hi"),
    # inspect
    case("missing.safetensors", "inspect", "{ws}/missing.safetensors"),
    case("folder", "inspect", "{ws}/folder"),
    case("truncated.safetensors", "inspect", "{ws}/truncated.safetensors"),
    case("noheader.safetensors", "inspect", "{ws}/noheader.safetensors"),
    case(("--neighbours", "0"), "inspect", P, "--neighbours", "0"),
    case(("--neighbours", "-2"), "inspect", P, "--neighbours=-2"),
    # export and import-peft
    case("missing.safetensors", "export", "{ws}/missing.safetensors", "--peft", "{ws}/adapter"),
    case(("existing.txt", "--peft"), "export", P, "--peft", "{ws}/existing.txt"),
    case("truncated.safetensors", "export", "{ws}/truncated.safetensors", "--peft", "{ws}/adapter"),
    case("missing-adapter", "import-peft", "{ws}/missing-adapter", "--out", "{ws}/imported.safetensors"),
    case("existing.txt", "import-peft", "{ws}/existing.txt", "--out", "{ws}/imported.safetensors"),
    case(("prompt.safetensors", "exists"), "import-peft", "{ws}/folder", "--out", P),
    case(("folder", "adapter"), "import-peft", "{ws}/folder", "--out", "{ws}/imported.safetensors"),
    case(("--out", "imported.txt"), "import-peft", "{ws}/folder", "--out", "{ws}/imported.txt"),
    case("--labels", "import-peft", "{ws}/folder", "--out", "{ws}/imported.safetensors", "--labels", ","),
    # save-pretrained and push
    case("missing.safetensors", "save-pretrained", "{ws}/missing.safetensors", "{ws}/shared"),
    case(("existing.txt", "is a file"), "save-pretrained", P, "{ws}/existing.txt"),
    case(("run", "metrics.jsonl"), "save-pretrained", P, "{ws}/run"),
    case(("--repo", "user/name"), "save-pretrained", P, "{ws}/shared", "--repo", "not a repo"),
    case(("folder", "README.md"), "push", "{ws}/folder", "--repo", "someone/shared"),
    case("missing-folder", "push", "{ws}/missing-folder", "--repo", "someone/shared"),
    case(("--repo", "user/name"), "push", "{ws}/folder", "--repo", "a/b/c"),
    case("--repo", "push", "{ws}/folder"),
    # benchmark
    case(("--batch-size", "0"), *B, "--batch-size", "0"),
    case(("--prompt-length", "0"), *B, "--prompt-length", "0"),
    case(("--batches", "0"), *B, "--batches", "0"),
    case(("--rounds", "0"), *B, "--rounds", "0"),
    case(("--top-k", "0"), *B, "--top-k", "0"),
    case(("--examples", "0"), *B, "--examples", "0"),
    case("bogus", *B, "--task", "bogus"),
    case("bogus", *B, "--configs", "bogus"),
    # serve
    case(("--port", "-5"), *S, "--port=-5"),
    case(("--port", "0"), *S, "--port", "0"),
    case(("--port", "70000"), *S, "--port", "70000"),
    case(("--port", "http"), *S, "--port", "http"),
    case(("--max-batch", "0"), *S, "--max-batch", "0"),
    case(("--window-ms", "-1"), *S, "--window-ms=-1"),
    case(("--window-ms", "nan"), *S, "--window-ms", "nan"),
    case(("--max-body-bytes", "0"), *S, "--max-body-bytes", "0"),
    case(("--max-texts", "0"), *S, "--max-texts", "0"),
    case(("--max-text-chars", "0"), *S, "--max-text-chars", "0"),
    case("missing-folder", "serve", "{ws}/missing-folder"),
    case("existing.txt", "serve", "{ws}/existing.txt"),
    case(("no-config", "config.json"), *S, "--backbone", "{ws}/no-config"),
    # probe
    case(("--prompts", "0"), *PR, "--method", "prompt", "--prompts", "0"),
    case(("--epochs", "0"), *PR, "--epochs", "0"),
    case(("--lr", "0"), *PR, "--lr", "0"),
    case(("--batch-size", "0"), *PR, "--batch-size", "0"),
    case(("--seed", "-1"), *PR, "--seed=-1"),
    case(("--limit", "0"), *PR, "--limit", "0"),
    case("bogus", *PR, "--relation", "bogus"),
    case("{subject}", *PR, "--manual", "no subject here"),
    case("missing.safetensors", *PR, "--probe", "{ws}/missing.safetensors"),
    case(("existing.txt", "--out"), *PR, "--out", "{ws}/existing.txt"),
    case("[P]", *PR, "--method", "manual", "--template", "[P] {subject} is"),
    case("--encoder", *PR, "--encoder", "gru"),
    # probe-sweep (its search space: tests/test_probe_sweep.py)
    case("--facts FILE", "probe-sweep"),
    case("missing.tsv", "probe-sweep", "--facts", "{ws}/missing.tsv"),
    case(("--prompts", "'0'"), "probe-sweep", "--facts", "{ws}/missing.tsv", "--prompts", "0,2"),
    case(("--trials", "'0'"), "probe-sweep", "--facts", "{ws}/missing.tsv", "--trials", "0"),
    case(("--encoder", "prompt"), "probe-sweep", "--facts", "{ws}/missing.tsv", "--method", "prompt", "--encoder", "lstm"),
    # sweep (its search space: tests/test_sweep.py)
    case(("--trials", "0"), "sweep", "--task", "rotten_tomatoes", "--trials", "0"),
    case(("--lr", "0:1"), "sweep", "--task", "rotten_tomatoes", "--lr", "0:1"),
    case(("--layers", "middle"), "sweep", "--task", "rotten_tomatoes", "--layers", "middle"),
    # the command itself
    case("bogus", "bogus"),
]


@pytest.mark.parametrize("argv, fragments", CASES)
def test_refused_in_one_line_and_nothing_changed(ws, argv, fragments, capsys, monkeypatch):
    monkeypatch.chdir(Path(ws["ws"]) / "cwd")  # default output folders land inside the workspace
    before = snapshot(Path(ws["ws"]))
    refused(fill(argv, ws), capsys, fill(fragments, ws))
    assert snapshot(Path(ws["ws"])) == before, "a refused command changed or added files"


def test_brackets_in_texts_are_printed_as_they_are(ws, capsys):
    """Console markup would swallow "[validation]" in a prediction as it did in error messages."""
    assert main(["predict", fill([P], ws)[0], "--text", "the [validation] set [bold]x[/]"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "the [validation] set [bold]x[/]"


def test_the_table_is_large_and_covers_every_command():
    from test_cli_startup import COMMANDS

    assert len(CASES) >= 100 and len({tuple(c.values[0]) for c in CASES}) == len(CASES)
    assert set(COMMANDS) <= {c.values[0][0] for c in CASES}


# -- free-form values ------------------------------------------------------------------------------
BOUNDED = [("train", "--train", "{ws}/missing.csv", "--batch-size"), ("train", "--train", "{ws}/missing.csv", "--lr"),
           ("train", "--train", "{ws}/missing.csv", "--warmup-ratio"), ("predict", "{ws}/missing.safetensors",
           "--text", "hi", "--top-k"), ("evaluate", "{ws}/missing.safetensors", "--batch-size"),
           ("serve", "{ws}/missing-folder", "--port"), ("generate", "{ws}/missing.safetensors", "--text", "hi",
           "--top-p"), ("benchmark", "--task", "bogus", "--rounds"), ("probe", "--relation", "bogus", "--epochs"),
           ("inspect", "{ws}/missing.safetensors", "--neighbours")]


def test_any_value_of_a_bounded_option_is_refused_or_reaches_the_next_check(ws, capsys):
    """Whatever text the option gets, the answer is one line and status 2 (the file named is missing)."""
    @FUZZ
    @given(st.sampled_from(BOUNDED), st.one_of(st.text(max_size=12), st.floats().map(str), st.integers().map(str)))
    def run(command, value):
        *argv, option = command
        refused(fill(argv, ws) + [f"{option}={value}"], capsys)
    run()


def test_any_template_layers_or_verbalizer_is_refused_in_one_line(ws, capsys):
    words = st.lists(st.sampled_from(["[P]", "[P]*2", "[P]*0", "{text}", "{label}", "{x}", "top:", "all", "0", ",",
                                      "=", ";", "a", "é", "\n", "{", "]"]), max_size=6).map("".join)

    @FUZZ
    @given(st.sampled_from(["--template", "--layers", "--verbalizer", "--label-column"]), words | st.text(max_size=10))
    def run(option, value):
        refused(["train", "--train", f"{ws['ws']}/missing.csv", f"{option}={value}"], capsys)
    run()


def test_any_bytes_as_a_prompt_file_or_config_file(ws, capsys, tmp_path):
    @FUZZ
    @given(st.binary(max_size=200), st.sampled_from(["inspect", "config"]))
    def run(data, target):
        path = tmp_path / ("file.safetensors" if target == "inspect" else "file.json")
        path.write_bytes(data)
        argv = ["inspect", str(path)] if target == "inspect" else ["train", "--config", str(path), "--train",
                                                                  f"{ws['ws']}/missing.csv"]
        refused(argv, capsys)
    run()


# -- server bodies ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(minilm, ws, tmp_path_factory):
    from fastapi.testclient import TestClient

    from ptune.serve.app import create_app

    folder = tmp_path_factory.mktemp("served")
    (folder / "sentiment.safetensors").write_bytes(Path(ws["ws"], "prompt.safetensors").read_bytes())
    (folder / "aaa.safetensors").write_bytes(b"corrupt")
    with TestClient(create_app(folder, minilm)) as test_client:
        yield test_client


GOOD = b'{"task": "sentiment", "texts": ["a triumph"]}'
BODIES = [
    pytest.param("application/x-www-form-urlencoded", GOOD, 200, "predictions", id="form content type"),
    pytest.param("text/plain", GOOD, 200, "predictions", id="text/plain"),
    pytest.param(None, GOOD, 200, "predictions", id="no content type"),
    pytest.param("application/json", b'{"task": "sentiment", "texts": ["x"', 400, "malformed JSON", id="cut JSON"),
    pytest.param("application/json", b'{"task": "sentiment" "texts": []}', 400, "delimiter", id="parser message"),
    pytest.param("application/json", b"", 400, "malformed JSON", id="empty body"),
    pytest.param("application/json", b'{"task": "\xff\xfe"}', 400, "UTF-8", id="not UTF-8"),
    pytest.param("application/json", b'[1, 2]', 422, "invalid request", id="JSON array"),
    pytest.param("application/json", b'{"task": "sentiment", "texts": [""]}', 422, "empty", id="empty text"),
    pytest.param("application/json", b'{"task": "sentiment", "texts": ["  \\t"]}', 422, "empty", id="blank text"),
    pytest.param("application/json", b'{"items": [{"task": "sentiment", "text": " "}]}', 422, "empty", id="blank item"),
    pytest.param("application/json", b'{"task": "sentiment", "texts": ["x"], "top_k": 0}', 422, "top_k", id="top_k 0"),
    pytest.param("application/json", b'{"task": "sentiment", "texts": "x"}', 422, "texts", id="texts a string"),
    pytest.param("application/json", b'{"task": "aaa", "texts": ["x"]}', 404, "aaa", id="failed task"),
    pytest.param("application/json", b'{"task": "sentiment", "texts": ["x"], "top_k": "many"}', 422, "top_k",
                 id="top_k text"),
]


@pytest.mark.parametrize("content_type, body, status, fragment", BODIES)
def test_server_bodies(client, content_type, body, status, fragment):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/predict", content=body, headers=headers)
    assert response.status_code == status, response.text
    text = response.text if status == 200 else response.json()["error"]
    assert fragment in text and "\n" not in text


def test_server_lists_a_corrupt_file_as_failed_and_serves_the_rest(client):
    for path in ("/tasks", "/health"):
        body = client.get(path).json()
        assert "aaa" in body["failed"], (path, body)
    assert [t["task"] for t in client.get("/tasks").json()["tasks"]] == ["sentiment"]


def test_any_content_type_reads_a_json_body(client):
    @settings(max_examples=10, deadline=None, derandomize=True)
    @given(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30))
    def run(content_type):
        response = client.post("/predict", content=GOOD, headers={"content-type": content_type})
        assert response.status_code == 200 and math.isfinite(response.json()["predictions"][0]["probability"])
    run()
