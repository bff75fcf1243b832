"""Metrics that fit the tags: the scheme read from the tag set, entity F1 by that scheme, token
accuracy and macro-F1 for tags without entities, SRL F1 without `V` as the CoNLL-2005 scorer counts
it (checked against srl-eval.pl itself where it is installed), the automatic choice and `--metric`."""

from __future__ import annotations

import importlib.util
import json
import logging
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from ptune.cli import main
from ptune.data.srl import arguments, spans
from ptune.data.tag_schemes import entity_spans, tag_scheme
from ptune.data.tasks import METRICS_BY_KIND, auto_metric, check_metric, from_files
from ptune.errors import PtuneError
from ptune.tasks import KINDS
from ptune.tasks.metrics import MAIN_KEY, entity_f1, score, srl_f1, token_accuracy
from ptune.tasks.tagging import entities

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
POS = ["DT", "JJ", "NN", "NNS", "VBD", "VBZ", ".", "-LRB-", "PRP$"]


# -- the scheme of a tag set --------------------------------------------------------------------------
@pytest.mark.parametrize(("tags", "scheme"), [
    (["O", "B-PER", "I-PER", "B-LOC", "I-LOC"], "IOB"),  # IOB2 (CoNLL-2003 as shipped)
    (["O", "I-PER", "I-LOC", "B-LOC"], "IOB"),  # IOB1 uses the same tags
    (["O", "B-NP", "I-NP", "B-VP"], "IOB"),  # CoNLL-2000 chunks
    (["O", "B", "I"], "IOB"),  # untyped spans
    (["O", "B-PER", "I-PER", "E-PER", "S-PER", "S-LOC"], "IOBES"),
    (["O", "B-PER", "E-PER"], "IOBES"),
    (["O", "B-PER", "I-PER", "L-PER", "U-LOC"], "BILOU"),
    (["O", "I-PER", "E-PER"], "IOE"),
    (POS, None),
    (["NP", "VP", "PP", "O"], None),  # chunk tags without prefixes
    (["O"], None),  # nothing marked
    (["O", "B-PER", "NN"], None),  # a plain tag among entity tags
    (["O", "S-PER", "U-PER"], None),  # two schemes mixed
    (["O", "B-"], None),  # a prefix without a type
])
def test_tag_scheme(tags, scheme):
    assert tag_scheme(tags) == scheme


# -- entity F1 by scheme ------------------------------------------------------------------------------
def test_iob_keeps_conlleval_rules():
    # As before: a stray I- starts an entity (IOB1 and IOB2 tags cannot be told apart).
    assert entity_f1([["O", "B-PER", "I-PER"]], [["O", "I-PER", "I-PER"]])["f1"] == 1.0


def test_iobes_is_read_strictly():
    gold = [["B-PER", "E-PER", "O", "S-LOC"]]
    predicted = [["B-PER", "I-PER", "O", "S-LOC"]]  # PER never closed by E-: no entity
    # gold: PER(0-1), LOC(3); predicted: LOC(3) only. P = 1/1, R = 1/2, F1 = 2/3.
    # conlleval's rules would call B-PER I-PER an entity and give 1.0.
    assert entity_f1(gold, predicted) == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3})


def test_bilou_is_read_strictly():
    # Two one-word entities (U-, U-) against one two-word entity (B-, L-): nothing matches.
    # conlleval's rules do not know U-/L- and would read both as one PER(0-1): 1.0.
    assert entity_f1([["U-PER", "U-PER"]], [["B-PER", "L-PER"]])["f1"] == 0.0
    assert entity_f1([["B-PER", "L-PER", "O", "U-LOC"]], [["B-PER", "L-PER", "O", "O"]]) == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3})


def test_predicted_entities_follow_the_scheme():
    words = ("a", "b", "c", "d")
    assert entities(words, ["B-PER", "L-PER", "O", "U-LOC"]) == [
        {"text": "a b", "type": "PER", "start": 0, "end": 2}, {"text": "d", "type": "LOC", "start": 3, "end": 4}]
    assert entities(words, ["DT", "NN", "VBZ", "NN"]) == []  # POS tags are no entities
    assert entity_spans(["O", "I-PER", "I-PER"]) == [("PER", 1, 2)]


# -- token accuracy and macro-F1 -----------------------------------------------------------------------
def test_token_accuracy_and_macro_f1_by_hand():
    gold = [["NN", "VB", "DT", "NN"], ["JJ", "NN"]]
    predicted = [["NN", "NN", "DT", "NN"], ["JJ", "VB"]]
    # 4 of 6 words right. Per tag F1 = 2 * right / (gold + predicted):
    # NN 2*2/(3+3) = 2/3, VB 0/(1+1) = 0, DT 2/2 = 1, JJ 2/2 = 1; macro = (2/3 + 0 + 1 + 1) / 4 = 2/3.
    assert token_accuracy(gold, predicted) == pytest.approx({"accuracy": 4 / 6, "macro_f1": 2 / 3})


def test_macro_f1_counts_a_tag_only_predicted():
    # "X" is never gold but predicted once: its F1 is 0 and it counts in the mean. A: 2*1/(2+1) = 2/3.
    assert token_accuracy([["A", "A"]], [["A", "X"]]) == pytest.approx({"accuracy": 0.5, "macro_f1": 1 / 3})


def test_token_accuracy_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="sentence 0: 2 gold tags but 1 predicted"):
        token_accuracy([["A", "B"]], [["A"]])


# -- SRL: CoNLL-2005 counting, V left out -------------------------------------------------------------
def test_srl_f1_without_v_by_hand():
    gold = [["B-ARG0", "B-V", "B-ARG1", "I-ARG1"]]
    predicted = [["B-ARG0", "B-V", "B-ARG1", "O"]]  # ARG1 one word short
    # Without V: gold ARG0, ARG1(2-3); predicted ARG0, ARG1(2-2): 1 right of 2 each way -> 0.5.
    # With V, the predicate's V (always easy) is one more right span: 2 of 3 -> 2/3.
    assert srl_f1(gold, predicted) == pytest.approx(
        {"f1": 0.5, "precision": 0.5, "recall": 0.5, "f1_with_v": 2 / 3})
    assert score("srl_f1", gold, predicted)[MAIN_KEY["srl_f1"]] == pytest.approx(0.5)
    # entity_f1 on the same tags is the with-V figure (what prompt files before srl_f1 record).
    assert entity_f1(gold, predicted)["f1"] == pytest.approx(2 / 3)


def test_srl_continuation_is_a_piece_of_its_argument():
    # ARG1 in two pieces, "(ARG1*) ... (C-ARG1*)": srl-eval.pl counts one argument, right only whole.
    assert arguments(["B-ARG1", "O", "B-V", "B-C-ARG1"]) == {("ARG1", ((0, 0), (3, 3))), ("V", ((2, 2),))}
    assert arguments(["B-C-ARG0", "B-V"]) == {("ARG0", ((0, 0),)), ("V", ((1, 1),))}  # no head: its own ARG0
    result = srl_f1([["B-ARG1", "O", "B-V", "B-C-ARG1"]], [["B-ARG1", "O", "B-V", "O"]])
    # Without V: the one gold argument is missed and the predicted one is wrong: 0. With V
    # (seqeval, each span alone): ARG1 and V right of 3 gold and 2 predicted: P 1, R 2/3, F1 0.8.
    assert result == pytest.approx({"f1": 0.0, "precision": 0.0, "recall": 0.0, "f1_with_v": 0.8})


def _srl_eval() -> Path | None:
    spec = importlib.util.find_spec("allennlp")  # finds the folder; never imports allennlp
    if spec is None or not spec.submodule_search_locations or shutil.which("perl") is None:
        return None
    path = Path(spec.submodule_search_locations[0]) / "tools" / "srl-eval.pl"
    return path if path.is_file() else None


def _props(tag_lists: list[list[str]], predicates: list[int]) -> str:
    """One sentence per predicate in srl-eval.pl's props format: the verb column, then brackets."""
    lines = []
    for tags, predicate in zip(tag_lists, predicates):
        cells = ["*"] * len(tags)
        for label, start, end in spans(tags):
            cells[start], cells[end] = f"({label}*", "*)"
            if start == end:
                cells[start] = f"({label}*)"
        lines += [f"{'verb' if i == predicate else '-'} {cell}" for i, cell in enumerate(cells)] + [""]
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(_srl_eval() is None, reason="perl or allennlp 0.9.0's tools/srl-eval.pl is not installed")
def test_srl_f1_equals_the_conll2005_scorer(tmp_path):
    rng = random.Random(0)
    labels = ["A0", "A1", "A2", "AM-TMP", "R-A0", "C-A1", "C-A0", "C-V"]
    tags = ["O"] + [f"{p}-{label}" for p in "BI" for label in labels]

    def sentence(n: int, predicate: int) -> list[str]:
        out, i = ["O"] * n, 0
        while i < n:
            if i != predicate and rng.random() < 0.4:
                label, length = rng.choice(labels), rng.randint(1, 3)
                for k in range(length):
                    if i + k >= n or i + k == predicate:
                        break
                    out[i + k] = ("B-" if k == 0 else "I-") + label
                i += max(k, 1)
            else:
                i += 1
        out[predicate] = "B-V"
        return out

    gold, predicted, predicates = [], [], []
    for _ in range(400):
        n = rng.randint(3, 14)
        predicate = rng.randrange(n)
        g = sentence(n, predicate)
        p = list(g)
        for _ in range(rng.randint(0, 3)):  # a few wrong tags, stray I- included
            p[rng.randrange(n)] = rng.choice(tags)
        gold.append(g)
        predicted.append(p if rng.random() < 0.7 else sentence(n, predicate))
        predicates.append(predicate)
    (tmp_path / "gold.props").write_text(_props(gold, predicates))
    (tmp_path / "predicted.props").write_text(_props(predicted, predicates))
    out = subprocess.run(["perl", str(_srl_eval()), str(tmp_path / "gold.props"), str(tmp_path / "predicted.props")],
                         capture_output=True, text=True, check=True).stdout
    overall = next(line.split() for line in out.splitlines() if line.strip().startswith("Overall"))
    ours = srl_f1(gold, predicted)
    assert [round(100 * ours[k], 2) for k in ("precision", "recall", "f1")] == [float(x) for x in overall[4:7]]
    assert ours["f1_with_v"] > ours["f1"]  # V is easy: counting it inflates F1


# -- the choice: automatic, overridable, checked --------------------------------------------------------
def test_every_kind_lists_its_metrics_where_torch_is_not_loaded():
    assert {name: kind.metrics for name, kind in KINDS.items()} == METRICS_BY_KIND
    assert KINDS["tagging"].metrics[0] == "entity_f1"  # the default of callers that name none
    assert all(metric in MAIN_KEY for metrics in METRICS_BY_KIND.values() for metric in metrics)
    assert MAIN_KEY["token_accuracy"] == "accuracy" and MAIN_KEY["srl_f1"] == "f1"


def _conll(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    path.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in s) for s in sentences) + "\n")
    return path


NER = [[("EU", "B-ORG"), ("rejects", "O"), ("German", "B-MISC"), ("call", "O")],
       [("Peter", "B-PER"), ("Blackburn", "I-PER")], [("BRUSSELS", "B-LOC"), ("1996-08-22", "O")]]
NER_IOBES = [[("EU", "S-ORG"), ("rejects", "O")], [("Peter", "B-PER"), ("Blackburn", "E-PER")]]
TAGGED_POS = [[("The", "DT"), ("cat", "NN"), ("sat", "VBD"), (".", ".")],
              [("Dogs", "NNS"), ("bark", "VBP"), ("loudly", "RB"), (".", ".")],
              [("A", "DT"), ("red", "JJ"), ("car", "NN"), ("stops", "VBZ")]]


@pytest.mark.parametrize(("sentences", "metric", "said"), [
    (NER, "entity_f1", "IOB"), (NER_IOBES, "entity_f1", "IOBES"), (TAGGED_POS, "token_accuracy", "DT, JJ")])
def test_from_files_chooses_by_the_tags_and_says_so(tmp_path, caplog, sentences, metric, said):
    with caplog.at_level(logging.INFO, logger="ptune"):
        task = from_files(_conll(tmp_path / "train.conll", sentences))
    assert task.metric == metric
    [message] = [r.getMessage() for r in caplog.records if "scored by" in r.getMessage()]
    assert f"scored by {metric}" in message and said in message and "--metric" in message


def test_auto_metric_srl_and_qa():
    from ptune.data import QAExample, TaggedExample

    srl = [TaggedExample(("I", "know"), ("B-ARG0", "B-V"), predicate=1)]
    assert auto_metric("tagging", ["O", "B-ARG0", "B-V"], srl) == "srl_f1"
    assert auto_metric("tagging", ["O", "B-ARG0", "B-V"], [TaggedExample(("I", "know"), ("B-ARG0", "B-V"))]) == "entity_f1"
    assert auto_metric("qa", [], [QAExample("1", "q", "c", is_impossible=True)]) == "squad_v2"
    assert auto_metric("classification", ["a", "b"]) == "accuracy"


def test_from_files_takes_a_metric_and_checks_it(tmp_path):
    ner, pos = _conll(tmp_path / "ner.conll", NER), _conll(tmp_path / "pos.conll", TAGGED_POS)
    assert from_files(ner, metric="token_accuracy").metric == "token_accuracy"
    assert from_files(ner, metric="srl_f1").metric == "srl_f1"
    with pytest.raises(PtuneError, match=r"--metric entity_f1 reads entities .* tags \(., DT, JJ, NN, NNS, RB, \.\.\.\)"
                                         r" have no such prefixes — use --metric token_accuracy"):
        from_files(pos, metric="entity_f1")
    with pytest.raises(PtuneError, match="--metric 'accuracy' does not score tagging tasks — use entity_f1 or "
                                         "token_accuracy or srl_f1"):
        from_files(ner, metric="accuracy")


def test_check_metric_srl_needs_bio_and_squad_needs_answers():
    from ptune.data import QAExample

    with pytest.raises(PtuneError, match="srl_f1 reads BIO argument tags, but this task's tags are IOBES"):
        check_metric("tagging", ["O", "S-PER"], "srl_f1")
    with pytest.raises(PtuneError, match="use --metric squad_v2"):
        check_metric("qa", [], "squad", [QAExample("1", "q", "c", is_impossible=True)])


# -- the command line ---------------------------------------------------------------------------------
TINY = ["--method", "prompt", "--length", "2", "--max-steps", "1", "--epochs", "1", "--batch-size", "4"]


def test_cli_metric_override_on_a_tiny_run(tmp_path, capsys):
    ner = _conll(tmp_path / "ner.conll", NER)
    out = tmp_path / "run"
    assert main(["-q", "train", "--train", str(ner), "--dev", str(ner), "--test", str(ner), "--metric",
                 "token_accuracy", "--out", str(out), *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["dev"]) == {"accuracy", "macro_f1"} and set(results["test"]) == {"accuracy", "macro_f1"}
    assert "dev_accuracy" in json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    from ptune.storage.prompt_files import read_header

    assert read_header(out / "prompt.safetensors")["task"]["metric"] == "token_accuracy"
    capsys.readouterr()
    # evaluate scores with the prompt's metric, or another the tags allow.
    assert main(["evaluate", str(out / "prompt.safetensors"), "--data", str(ner)]) == 0
    assert set(json.loads(capsys.readouterr().out)) >= {"accuracy", "macro_f1"}
    assert main(["evaluate", str(out / "prompt.safetensors"), "--data", str(ner), "--metric", "entity_f1"]) == 0
    assert set(json.loads(capsys.readouterr().out)) >= {"f1", "precision", "recall"}


@pytest.mark.parametrize(("args", "wanted"), [
    (["--metric", "entity_f1"], "--metric entity_f1 reads entities"),
    (["--metric", "bleu"], "--metric 'bleu' does not score tagging tasks — use entity_f1 or token_accuracy or srl_f1"),
])
def test_cli_bad_metric_is_one_line(tmp_path, capsys, args, wanted):
    pos = _conll(tmp_path / "pos.conll", TAGGED_POS)
    assert main(["train", "--train", str(pos), "--out", str(tmp_path / "run"), *args, *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert wanted in err


def test_cli_metric_is_refused_with_resume_and_multitask(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "--metric", "token_accuracy"]) == 2
    assert "drop --metric" in capsys.readouterr().err
    assert main(["train", "--task", "conll2003", "rotten_tomatoes", "--metric", "token_accuracy"]) == 2
    assert "--metric apply to one task" in capsys.readouterr().err


# -- prompt files from before token_accuracy and srl_f1 ------------------------------------------------
def test_legacy_tagging_prompt_still_scores_entity_f1(minilm, tmp_path, capsys):
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

    from ptune.data import read_conll
    from ptune.infer.predict import predict
    from ptune.storage.prompt_files import load_prompt, read_header

    prompt = LEGACY / "conll_deep_reparam_minilm.safetensors"
    assert read_header(prompt)["task"]["metric"] == "entity_f1"
    data = _conll(tmp_path / "ner.conll", NER)
    assert main(["evaluate", str(prompt), "--data", str(data)]) == 0
    scored = json.loads(capsys.readouterr().out)
    # As before: seqeval's conlleval-style entity F1 on what the prompt predicts.
    examples = read_conll(data)
    predicted = predict(load_prompt(prompt, minilm), examples)
    p, r, f, _ = precision_recall_fscore_support([list(e.tags) for e in examples], predicted, average="micro",
                                                 zero_division=0)
    assert (scored["precision"], scored["recall"], scored["f1"]) == pytest.approx((p, r, f))
    assert main(["evaluate", str(prompt), "--data", str(data), "--metric", "token_accuracy"]) == 0
    assert set(json.loads(capsys.readouterr().out)) >= {"accuracy", "macro_f1"}


def test_with_metric_and_resume_specs(tmp_path):
    from ptune.cli.train import _task_from_spec
    from ptune.data.tasks import Task, with_metric

    task = Task("t", "tagging", ["O", "B-PER", "I-PER"], [], [], [], "entity_f1")
    assert with_metric(task, None) is task
    assert with_metric(task, "token_accuracy").metric == "token_accuracy" and task.metric == "entity_f1"
    with pytest.raises(PtuneError, match="does not score tagging tasks"):
        with_metric(task, "squad")
    pos = str(_conll(tmp_path / "pos.conll", TAGGED_POS))
    assert _task_from_spec({"train": pos, "dev": None, "test": None, "metric": "token_accuracy"}).metric == "token_accuracy"
    # A checkpoint from before the metric was recorded selected on entity F1: it resumes on that.
    assert _task_from_spec({"train": pos, "dev": None, "test": None}).metric == "entity_f1"


def test_config_file_metric(tmp_path):
    from ptune.cli import build_parser
    from ptune.cli.options import read_config
    from ptune.cli.train import load_task

    ner = str(_conll(tmp_path / "ner.conll", NER))
    (tmp_path / "config.json").write_text(json.dumps({"train": ner, "metric": "token_accuracy"}))
    args = build_parser().parse_args(["train"])
    assert load_task(args, read_config(str(tmp_path / "config.json"))).metric == "token_accuracy"
    args = build_parser().parse_args(["train", "--metric", "srl_f1"])  # the flag wins
    assert load_task(args, read_config(str(tmp_path / "config.json"))).metric == "srl_f1"
