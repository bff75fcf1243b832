"""GLUE and SuperGLUE by name: their metrics against values worked out by hand, their released formats
(tests/fixtures/glue, tests/fixtures/superglue: a few lines each, as released), the same names through
the hub (a local folder laid out as the hub's repository), and `ptune train --task NAME` with `ptune
evaluate` on every one of them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ptune.cli import main
from ptune.data import ChoiceExample, Columns, TextExample
from ptune.data.examples import GroupedTextExample
from ptune.data.metric_choice import check_metric, positive_label
from ptune.data.named import NAMED, named_dataset, named_task
from ptune.data.tasks import FILE_TASKS, file_task, from_dataset, read_for_task
from ptune.errors import PtuneError
from ptune.storage.prompt_files import load_prompt
from ptune.tasks import get_kind
from ptune.tasks.glue_metrics import GroupedLabels
from ptune.tasks.metrics import MAIN_KEY, score

FIXTURES = Path(__file__).parent / "fixtures"
# What `ptune evaluate` reports for each named task: its official numbers (and accuracy where it helps).
KEYS = {
    "glue/cola": {"matthews", "accuracy"}, "glue/sst2": {"accuracy"}, "glue/mrpc": {"accuracy", "f1"},
    "glue/qqp": {"accuracy", "f1"}, "glue/stsb": {"pearson", "spearman", "mse"}, "glue/mnli": {"accuracy"},
    "glue/qnli": {"accuracy"}, "glue/rte": {"accuracy"}, "glue/wnli": {"accuracy"},
    "superglue/boolq": {"accuracy"}, "superglue/cb": {"accuracy", "macro_f1"}, "superglue/copa": {"accuracy"},
    "superglue/rte": {"accuracy"}, "superglue/wic": {"accuracy"}, "superglue/wsc": {"accuracy"},
    "superglue/multirc": {"f1a", "em"}, "superglue/record": {"f1", "em"},
}


def files(name: str) -> tuple[Path, Path]:
    """The fixture's train and dev files of a named task."""
    benchmark, config = name.split("/")
    folder = FIXTURES / benchmark / config
    if benchmark == "superglue":
        return folder / "train.jsonl", folder / "val.jsonl"
    return folder / "train.tsv", folder / ("dev_matched.tsv" if config == "mnli" else "dev.tsv")


# -- metrics, by hand ----------------------------------------------------------------------------------
def test_f1_of_the_positive_class():
    gold = ["equivalent", "equivalent", "not_equivalent", "not_equivalent", "equivalent"]
    predicted = ["equivalent", "not_equivalent", "not_equivalent", "equivalent", "equivalent"]
    # positive "equivalent": TP 2 (rows 1, 5), FN 1 (row 2), FP 1 (row 4): F1 = 2*2 / (2*2 + 1 + 1)
    assert score("f1", gold, predicted) == {"accuracy": pytest.approx(3 / 5), "f1": pytest.approx(4 / 6)}
    assert score("f1", ["not_duplicate"] * 2, ["not_duplicate"] * 2) == {"accuracy": 1.0, "f1": 0.0}  # no positive
    assert positive_label(["not_duplicate", "duplicate"]) == "duplicate" and positive_label(["False", "True"]) == "True"
    assert positive_label(["0", "1"]) == "1" and positive_label(["spam", "ham"]) is None


def test_macro_f1_over_the_labels_seen():
    gold = ["entailment", "entailment", "contradiction", "neutral"]
    predicted = ["entailment", "contradiction", "contradiction", "entailment"]
    # per label F1 = 2 * right / (gold + predicted): entailment 2*1/(2+2), contradiction 2*1/(1+2), neutral 0/(1+0)
    assert score("macro_f1", gold, predicted) == {"accuracy": pytest.approx(0.5),
                                                  "macro_f1": pytest.approx((1 / 2 + 2 / 3 + 0) / 3)}


def test_matthews_correlation_of_a_confusion_matrix():
    # acceptable is positive: TP 3, FN 1, TN 2, FP 1 -> (3*2 - 1*1) / sqrt((3+1)(3+1)(2+1)(2+1)) = 5/12
    gold = ["acceptable"] * 4 + ["unacceptable"] * 3
    predicted = ["acceptable"] * 3 + ["unacceptable"] + ["unacceptable"] * 2 + ["acceptable"]
    result = score("matthews", gold, predicted)
    assert result == {"matthews": pytest.approx(5 / 12), "accuracy": pytest.approx(5 / 7)}
    assert score("matthews", gold, ["acceptable"] * 7)["matthews"] == 0.0  # one class predicted: undefined, 0
    assert score("matthews", gold, gold)["matthews"] == pytest.approx(1.0)
    inverted = ["unacceptable" if g == "acceptable" else "acceptable" for g in gold]
    assert score("matthews", gold, inverted)["matthews"] == pytest.approx(-1.0)
    # three classes (Gorodkin's R_K): correct c = 2 of s = 4; gold counts t = (a 2, b 1, c 1), predicted
    # p = (a 2, b 2, c 0): (c*s - sum p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2)) = (8 - 6) / sqrt(8 * 10)
    three = score("matthews", ["a", "a", "b", "c"], ["a", "b", "b", "a"])["matthews"]
    assert three == pytest.approx(2 / math.sqrt(80))


def test_multirc_f1a_over_answer_options_and_exact_match_per_question():
    gold = GroupedLabels(["True", "False", "True", "True", "False"], ["q1", "q1", "q1", "q2", "q2"])
    predicted = ["True", "False", "False", "True", "False"]
    # F1a: TP 2, FN 1 (q1's third option), FP 0 -> 2*2 / (3 + 2); EM: q1 wrong, q2 right -> 1/2
    assert score("multirc", gold, predicted) == {"f1a": pytest.approx(0.8), "em": 0.5}
    assert get_kind("classification").gold([GroupedTextExample("p", "True", "q a", "q1")]).groups == ["q1"]
    with pytest.raises(PtuneError, match="per question"):
        score("multirc", ["True"], ["True"])


def test_record_token_f1_and_em_against_the_best_answer():
    berlin = ChoiceExample("p", ("in Berlin", "in Angela Merkel"), 0, ("Berlin",), ("Berlin", "Angela Merkel"))
    merkel = ChoiceExample("p", ("Merkel thanked", "Angela Merkel thanked", "Berlin thanked"), 1,
                           ("Angela Merkel", "Merkel's government"), ("Merkel", "Angela Merkel", "Berlin"))
    # "Merkel" against "Angela Merkel": precision 1, recall 1/2 -> F1 2/3; against "Merkel's government":
    # tokens merkels, government -> 0; the best is 2/3, no exact match
    assert score("record", [berlin, merkel], [0, 0]) == {"f1": pytest.approx((1 + 2 / 3) / 2), "em": 0.5}
    assert score("record", [berlin, merkel], [1, 2]) == {"f1": 0.0, "em": 0.0}
    copa = ChoiceExample("p", ("so it broke.", "so it sang."), 0)  # no answers: the right choice is the answer
    assert score("choice_accuracy", [copa, copa], [0, 1]) == {"accuracy": 0.5}
    assert score("record", [copa], [0]) == {"f1": 1.0, "em": 1.0}


def test_every_metric_names_its_main_key():
    assert {MAIN_KEY[m] for m in ("f1", "macro_f1", "matthews", "multirc", "choice_accuracy", "record")} == {
        "f1", "macro_f1", "matthews", "f1a", "accuracy"}
    assert MAIN_KEY[named_task("glue/stsb").metric] == "pearson"


def test_metrics_that_cannot_score_a_task_are_refused():
    with pytest.raises(PtuneError, match="positive class.*spam, ham"):
        check_metric("classification", ["spam", "ham"], "f1")
    with pytest.raises(PtuneError, match="superglue/multirc"):
        check_metric("classification", ["False", "True"], "multirc", [TextExample("p", "True", "q a")])
    with pytest.raises(PtuneError, match="choice_accuracy or record"):
        check_metric("multiple_choice", [], "accuracy")


# -- the released formats ----------------------------------------------------------------------------
def test_glue_tsv_files_as_released():
    cola = file_task("glue/cola", *files("glue/cola"))  # no header
    assert [e.label for e in cola.train] == ["acceptable"] * 2 + ["unacceptable"] * 2
    assert cola.train[2] == TextExample("They drank the pub.", "unacceptable")
    assert [e.label for e in read_for_task(FIXTURES / "glue/cola/test.tsv", "classification", "glue/cola")] == [None] * 2
    mrpc = file_task("glue/mrpc", *files("glue/mrpc"))  # a byte-order mark before "Quality"
    assert mrpc.labels == ["not_equivalent", "equivalent"] and mrpc.metric == "f1"
    assert mrpc.train[1].text.startswith("Yucaipa owned") and mrpc.train[1].label == "not_equivalent"
    assert mrpc.train[1].text_pair.startswith("Yucaipa bought")
    mnli = file_task("glue/mnli", *files("glue/mnli"), FIXTURES / "glue/mnli/dev_mismatched.tsv")
    assert (len(mnli.dev), len(mnli.test)) == (2, 2)  # the matched dev row without a gold label ("-") is left out
    assert mnli.labels == ["entailment", "neutral", "contradiction"] and mnli.test[0].label == "contradiction"
    stsb = file_task("glue/stsb", *files("glue/stsb"))
    assert (stsb.kind, stsb.metric, stsb.train[1].label) == ("regression", "correlation", 3.8)
    sst2 = read_for_task(FIXTURES / "glue/sst2/test.tsv", "classification", "glue/sst2")
    assert [e.label for e in sst2] == [None, None] and sst2[0].text == "uneasy mishmash of styles and genres ."
    for name in ("glue/qqp", "glue/qnli", "glue/rte", "glue/wnli"):
        task = file_task(name, *files(name))
        assert len(task.train) == 4 and all(e.text_pair for e in task.train) and task.metric == named_task(name).metric
    assert file_task("glue/wnli", *files("glue/wnli")).train[3].label == "not_entailment"  # 0


def test_a_broken_glue_file_names_its_line(tmp_path):
    bad = tmp_path / "train.tsv"
    bad.write_text("sentence\tlabel\na fine film\t1\nno label column here\n")
    with pytest.raises(PtuneError, match=r"train.tsv:3: 1 tab-separated fields"):
        file_task("glue/sst2", bad)
    bad.write_text("sentence\tlabel\na fine film\t7\n")
    with pytest.raises(PtuneError, match=r"train.tsv:2: label '7' is not one of GLUE sst2's"):
        file_task("glue/sst2", bad)
    bad.write_text("text\tlabel\na fine film\t1\n")
    with pytest.raises(PtuneError, match="no 'sentence' column"):
        file_task("glue/sst2", bad)


def test_superglue_jsonl_as_released():
    multirc = file_task("superglue/multirc", *files("superglue/multirc"))
    assert [e.group for e in multirc.dev] == ["0-0"] * 3 + ["0-1"] * 2
    assert multirc.dev[0].text_pair == "What did Tom do during the rain? He read a book" and multirc.dev[0].label == "True"
    record = file_task("superglue/record", *files("superglue/record"))
    merkel = record.dev[1]
    assert merkel.entities == ("Barack Obama", "Angela Merkel", "Berlin", "France", "Obama", "Merkel")
    assert merkel.choices[1] == "Angela Merkel thanked the US president" and merkel.label == 1
    assert "@highlight" not in merkel.text and merkel.text.endswith("Obama praised Merkel.")
    wic = file_task("superglue/wic", *files("superglue/wic"))
    assert wic.train[0].text == "Do you want to come over to my *place* later?" and wic.train[0].label == "False"
    wsc = file_task("superglue/wsc", *files("superglue/wsc"))
    assert "*He* should" in wsc.train[0].text and wsc.train[0].text_pair == "He refers to Mark"
    cb = file_task("superglue/cb", *files("superglue/cb"))
    assert cb.labels == ["entailment", "contradiction", "neutral"] and cb.metric == "macro_f1"
    boolq = file_task("superglue/boolq", *files("superglue/boolq"))
    assert boolq.train[3].label == "False" and boolq.train[0].text.startswith("do iran")
    assert file_task("superglue/rte", *files("superglue/rte")).dev[1].label == "entailment"


def test_a_broken_superglue_row_names_its_line(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"passage": {"text": "t", "questions": [{"question": "q", "answers": ["not an object"]}]}}\n')
    with pytest.raises(PtuneError, match=r"train.jsonl:1: not a SuperGLUE multirc row as released"):
        file_task("superglue/multirc", bad)
    bad.write_text('{"question": "is it?", "passage": "It is.", "label": "maybe"}\n')
    with pytest.raises(PtuneError, match=r"train.jsonl:1: label 'maybe' is not one of False, True"):
        file_task("superglue/boolq", bad)


def test_named_tasks_are_file_tasks_and_unknown_names_are_refused(capsys):
    assert set(NAMED) == set(KEYS) and set(NAMED) <= set(FILE_TASKS)
    with pytest.raises(PtuneError, match="named tasks: glue/cola"):
        named_task("glue/sst5")
    assert main(["train", "--task", "superglue/wsc"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "give --train FILE [--dev FILE] [--test FILE], or the hub's copy: --dataset super_glue --dataset-config wsc.fixed")


# -- the same names through the hub --------------------------------------------------------------------
def hub_folder(root: Path, name: str, configs: dict[str, dict[str, dict]]) -> Path:
    """A local dataset laid out as the hub's repository `name`: Parquet files per configuration and split
    (rows as the hub's: label ids, -1 where withheld), and a README naming them."""
    datasets = pytest.importorskip("datasets")
    folder = root / name
    readme = ["---", "configs:"]
    for config, splits in configs.items():
        readme += [f"- config_name: {config}", "  data_files:"]
        for split, columns in splits.items():
            (folder / config).mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_dict(columns).to_parquet(str(folder / config / f"{split}-00000-of-00001.parquet"))
            readme += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    (folder / "README.md").write_text("\n".join([*readme, "---", ""]))
    return folder


def test_glue_through_the_hub_is_the_same_task(tmp_path):
    pairs = {"premise": ["A man sleeps.", "A dog runs.", "It rains."], "hypothesis": ["A man is awake.", "An animal moves.", "It is wet."]}
    glue = hub_folder(tmp_path, "glue", {"mnli": {
        "train": {**pairs, "label": [2, 0, 0], "idx": [0, 1, 2]},
        "validation_matched": {**pairs, "label": [2, 0, 1], "idx": [0, 1, 2]},
        "validation_mismatched": {**pairs, "label": [0, 0, 0], "idx": [0, 1, 2]},
        "test_matched": {**pairs, "label": [-1, -1, -1], "idx": [0, 1, 2]}}})
    assert named_dataset(glue, "mnli") is NAMED["glue/mnli"] and named_dataset(glue, "ax") is None
    assert named_dataset("nyu-mll/glue", "sst2") is NAMED["glue/sst2"] and named_dataset("imdb", None) is None
    task = from_dataset(glue, "mnli")
    assert (task.name, task.kind, task.metric, task.labels) == ("glue/mnli", "classification", "accuracy",
                                                                ["entailment", "neutral", "contradiction"])
    assert [e.label for e in task.dev] == ["contradiction", "entailment", "neutral"]  # validation_matched
    assert [e.label for e in task.test] == ["entailment"] * 3  # validation_mismatched
    assert task.train[0] == TextExample("A man sleeps.", "contradiction", "A man is awake.")
    assert task.source["config"] == "mnli"
    dev = read_for_task(glue, "classification", "glue/mnli", split="dev", config="mnli", dataset=True)
    assert [e.label for e in dev] == ["contradiction", "entailment", "neutral"]
    with pytest.raises(PtuneError, match="--text-column review: glue/mnli reads its own columns"):
        from_dataset(glue, "mnli", columns=Columns(text="review"))
    assert from_dataset(glue, "mnli", columns=Columns(text="premise")).name == "glue/mnli"  # its own column


def test_superglue_through_the_hub_is_the_same_task(tmp_path):
    copa = {"premise": ["The man fell.", "It rained."], "choice1": ["He tripped.", "The street got wet."],
            "choice2": ["He sang.", "The sun came out."], "question": ["cause", "effect"], "idx": [0, 1]}
    multirc = {"paragraph": ["Tom read a book.", "Tom read a book.", "Tom read a book."],
               "question": ["What did Tom read?", "What did Tom read?", "Who read?"],
               "answer": ["A book", "A letter", "Tom"],
               "idx": [{"paragraph": 0, "question": 0, "answer": 0}, {"paragraph": 0, "question": 0, "answer": 1},
                       {"paragraph": 0, "question": 1, "answer": 2}], "label": [1, 0, 1]}
    folder = hub_folder(tmp_path, "super_glue", {
        "copa": {"train": {**copa, "label": [0, 0]}, "validation": {**copa, "label": [0, 1]},
                 "test": {**copa, "label": [-1, -1]}},
        "multirc": {"train": multirc, "validation": multirc}})
    task = from_dataset(folder, "copa")
    assert (task.name, task.kind, task.metric, len(task.test)) == ("superglue/copa", "multiple_choice",
                                                                   "choice_accuracy", 0)  # test: no labels
    assert task.dev[1] == ChoiceExample("It rained.", ("so the street got wet.", "so the sun came out."), 1)
    multi = from_dataset(folder, "multirc")
    assert multi.name == "superglue/multirc" and [e.group for e in multi.dev] == ["0-0", "0-0", "0-1"]
    assert [e.label for e in multi.train] == ["True", "False", "True"]


# -- ptune train --task NAME, ptune evaluate --------------------------------------------------------
@pytest.mark.parametrize("name", sorted(KEYS))
def test_train_a_step_and_evaluate_each_named_task(name, tiny_bert_dir, tmp_path, capsys):
    train, dev = files(name)
    out = tmp_path / "run"
    assert main(["-q", "train", "--task", name, "--train", str(train), "--dev", str(dev), "--backbone",
                 str(tiny_bert_dir), "--method", "prompt", "--length", "2", "--max-length", "96", "--epochs", "1",
                 "--max-steps", "1", "--out", str(out)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["task"] == name and set(results["dev"]) == KEYS[name]
    assert main(["-q", "evaluate", str(out / "prompt.safetensors"), "--data", str(dev)]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert set(scored) - {"prompt", "data", "examples", "truncated"} == KEYS[name]
    assert scored["examples"] == len(file_task(name, train, dev).dev)
    if name == "superglue/multirc":  # evaluate groups answer options by question: recount by hand
        model = load_prompt(out / "prompt.safetensors")
        examples = file_task(name, train, dev).dev
        from ptune.infer.predict import predict

        predicted = predict(model, examples)
        right = [p == e.label for p, e in zip(predicted, examples)]
        assert scored["em"] == ((all(right[:3]) + all(right[3:])) / 2)


# -- docs/DATA.md ----------------------------------------------------------------------------------
def test_the_data_docs_section_runs_on_the_fixtures(tiny_bert_dir, tmp_path, monkeypatch, capsys):
    """docs/DATA.md's "GLUE and SuperGLUE by name": its files written, its commands run on the fixtures
    (MRPC/, MNLI/, COPA/) and a local `super_glue` folder, training with a tiny budget."""
    import re
    import shlex

    text = (Path(__file__).parents[1] / "docs" / "DATA.md").read_text(encoding="utf-8")
    section = text.split("## GLUE and SuperGLUE by name")[1].split("\n## ")[0]
    monkeypatch.chdir(tmp_path)
    for name, content in re.findall(r"^`([\w./-]+)`:\n\n```\w*\n(.*?)^```", section, re.MULTILINE | re.DOTALL):
        Path(name).write_text(content, encoding="utf-8")
    for folder, fixture in (("MRPC", "glue/mrpc"), ("MNLI", "glue/mnli"), ("COPA", "superglue/copa")):
        Path(folder).symlink_to(FIXTURES / fixture)
    copa = {"premise": ["The man fell.", "It rained."], "choice1": ["He tripped.", "The street got wet."],
            "choice2": ["He sang.", "The sun came out."], "question": ["cause", "effect"], "idx": [0, 1]}
    hub = hub_folder(tmp_path / "hub", "super_glue", {"copa": {"train": {**copa, "label": [0, 0]},
                                                                "validation": {**copa, "label": [0, 1]}}})
    lines = [line for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL) for line in block.splitlines()]
    outputs = {}
    for line in lines:
        argv = [str(hub) if arg == "super_glue" else arg for arg in shlex.split(line, comments=True)[1:]]
        if argv[0] == "train":
            argv += ["--backbone", str(tiny_bert_dir), "--length", "2", "--epochs", "1", "--max-steps", "1"]
        assert main(["-q", *argv]) == 0, line
        outputs[line] = capsys.readouterr().out
    assert json.loads(outputs[lines[1]])["examples"] == 3 and "f1" in json.loads(outputs[lines[1]])
    assert set(json.loads(outputs[lines[2]])["test"]) == {"accuracy"}  # MNLI mismatched, scored at the end
    assert json.loads(outputs[lines[4]])["choices"] == ["because it was fragile.", "because it was small."]
    assert json.loads(outputs[lines[5]])["task"] == "superglue/copa"
    quiz = [json.loads(record) for record in outputs[lines[-1]].splitlines()]
    assert [len(record["probabilities"]) for record in quiz] == [2, 2]
