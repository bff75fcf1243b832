"""Tests for extractive QA: the SQuAD readers, windowing with a stride, span decoding back to the
original text, the SQuAD metric, and the span head."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import pytest
import torch

from ptune.data.squad import QAExample, read_squad, read_squad_records
from ptune.errors import PtuneError
from ptune.heads.span import SpanHead
from ptune.tasks.qa import NO_ANSWER, QAFeature, best_spans, collate_qa, featurize
from ptune.tasks.squad_metrics import exact_match, f1, normalize_answer, squad_scores


def _allennlp_fixture() -> Path | None:
    spec = importlib.util.find_spec("allennlp")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "tests" / "fixtures" / "data" / "squad.json"
    return path if path.is_file() else None


@pytest.fixture(scope="module")
def squad_fixture() -> Path:
    path = _allennlp_fixture()
    if path is None:
        pytest.skip("allennlp's tests/fixtures/data/squad.json is not installed (pip install allennlp==0.9.0 --no-deps)")
    return path


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from ptune.model.backbones import resolve

    return AutoTokenizer.from_pretrained(resolve("minilm"))


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def one_hot_logits(features: list[QAFeature]) -> tuple[torch.Tensor, torch.Tensor]:
    """[F, T] logits that put all the weight on each feature's target positions."""
    length = max(len(f.input_ids) for f in features)
    starts, ends = torch.zeros(len(features), length), torch.zeros(len(features), length)
    for row, f in enumerate(features):
        starts[row, f.start_position] = 10.0
        ends[row, f.end_position] = 10.0
    return starts, ends


def official(qas: list[dict], context: str = "Paris is the capital of France.") -> str:
    return json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]})


# -- reading ------------------------------------------------------------------------------------


def test_reads_the_allennlp_fixture(squad_fixture):
    examples = read_squad(squad_fixture)
    assert len(examples) == 5
    assert len({e.id for e in examples}) == 5
    assert examples[0].id == "5733be284776f41900661182"
    assert examples[0].answers == ("Saint Bernadette Soubirous",)
    for e in examples:
        assert not e.is_impossible and e.answers
        for text, start in zip(e.answers, e.answer_starts, strict=True):
            assert e.context[start : start + len(text)] == text


def test_reads_squad_v2_impossible_questions(tmp_path):
    path = write(tmp_path, "dev-v2.0.json", official([
        {"id": "q1", "question": "What is the capital of France?", "is_impossible": False,
         "answers": [{"text": "Paris", "answer_start": 0}]},
        {"id": "q2", "question": "What is the capital of Spain?", "is_impossible": True, "answers": [],
         "plausible_answers": [{"text": "France", "answer_start": 999}]},
    ]))
    q1, q2 = read_squad(path)
    assert (q1.answers, q1.answer_starts, q1.is_impossible) == (("Paris",), (0,), False)
    assert (q2.answers, q2.answer_starts, q2.is_impossible) == ((), (), True)


def test_reads_hf_schema_jsonl_and_json_array(tmp_path):
    records = [
        {"id": "a", "title": "t", "context": "Paris is the capital of France.", "question": "Capital?",
         "answers": {"text": ["Paris", "Paris"], "answer_start": [0, 0]}},
        {"id": "b", "title": "t", "context": "Paris is the capital of France.", "question": "Of Spain?",
         "answers": {"text": [], "answer_start": []}},
    ]
    lines = write(tmp_path, "train.jsonl", "\n".join(json.dumps(r) for r in records) + "\n")
    array = write(tmp_path, "train.json", json.dumps(records))
    as_lines_in_json = write(tmp_path, "to_json.json", "\n".join(json.dumps(r) for r in records))
    expected = [
        QAExample("a", "Capital?", "Paris is the capital of France.", ("Paris", "Paris"), (0, 0), False),
        QAExample("b", "Of Spain?", "Paris is the capital of France.", (), (), True),
    ]
    assert read_squad(lines) == expected
    assert read_squad(array) == expected
    assert read_squad(as_lines_in_json) == expected
    assert read_squad_records(records, "my dataset") == expected


def error(excinfo: pytest.ExceptionInfo[PtuneError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and " — " in message
    return message


def test_answer_offset_mismatch_names_file_and_question(tmp_path):
    path = write(tmp_path, "bad.json", official([
        {"id": "q-17", "question": "Which country?", "answers": [{"text": "France", "answer_start": 20}]},
    ]))
    with pytest.raises(PtuneError) as excinfo:
        read_squad(path)
    message = error(excinfo)
    assert str(path) in message and "'q-17'" in message and "answer_start 20" in message
    assert "occurs at offset 24" in message  # the hint says where the text really is


def test_hf_jsonl_mismatch_names_line_and_question(tmp_path):
    good = {"id": "ok", "context": "abc def", "question": "q?", "answers": {"text": ["abc"], "answer_start": [0]}}
    bad = {"id": "bad-1", "context": "abc def", "question": "q?", "answers": {"text": ["def"], "answer_start": [3]}}
    path = write(tmp_path, "d.jsonl", json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(PtuneError) as excinfo:
        read_squad(path)
    message = error(excinfo)
    assert f"{path}:2" in message and "'bad-1'" in message


def test_missing_question_field(tmp_path):
    path = write(tmp_path, "q.json", official([{"id": "q9", "answers": [{"text": "Paris", "answer_start": 0}]}]))
    with pytest.raises(PtuneError) as excinfo:
        read_squad(path)
    message = error(excinfo)
    assert str(path) in message and "'q9'" in message and "no 'question' field" in message


@pytest.mark.parametrize(
    ("qa", "expected"),
    [
        ({"question": "x?", "answers": []}, "no 'id' field"),
        ({"id": "q", "question": 3, "answers": []}, "'question' must be a string"),
        ({"id": "q", "question": "x?", "answers": {"text": "Paris"}}, "'answers' must be a list"),
        ({"id": "q", "question": "x?", "answers": [{"text": "Paris", "answer_start": "0"}]}, "whole number"),
        ({"id": "q", "question": "x?", "answers": [{"text": "Paris", "answer_start": 0}], "is_impossible": True},
         "marked is_impossible"),
        ({"id": "q", "question": "x?", "answers": [], "is_impossible": False}, "has no answers"),
    ],
)
def test_wrong_fields_and_types(tmp_path, qa, expected):
    with pytest.raises(PtuneError, match=expected):
        read_squad(write(tmp_path, "f.json", official([qa])))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "empty file"),
        ("\n  \n", "empty file"),
        ('{"data": [', "invalid JSON"),
        (b'{"data": "\xe9"}', "not valid UTF-8"),
        ('{"version": "1.1"}', "expected SQuAD JSON"),
        ('{"data": []}', "no questions found"),
    ],
)
def test_unreadable_files(tmp_path, content, expected):
    with pytest.raises(PtuneError, match=expected):
        read_squad(write(tmp_path, "f.json", content))


def test_duplicate_ids_and_bad_records():
    record = {"id": "x", "context": "abc", "question": "q?", "answers": {"text": ["abc"], "answer_start": [0]}}
    with pytest.raises(PtuneError, match="'x' appears twice"):
        read_squad_records([record, record], "ds")
    with pytest.raises(PtuneError, match=r"ds \(record 1\).*1 answer texts but 2"):
        read_squad_records([{**record, "answers": {"text": ["abc"], "answer_start": [0, 1]}}], "ds")


# -- windows and spans --------------------------------------------------------------------------


@pytest.mark.parametrize("question_first", [True, False])
def test_fixture_targets_decode_to_the_gold_answer(squad_fixture, tokenizer, question_first):
    examples = read_squad(squad_fixture)
    features = featurize(examples, tokenizer, max_length=128, stride=32, question_first=question_first)
    assert len(features) > len(examples)  # the 695-character context needs several windows
    found = set()
    for f in features:
        assert f.offsets[NO_ANSWER] is None and len(f.offsets) == len(f.input_ids) <= 128
        assert f.token_type_ids is not None and len(f.token_type_ids) == len(f.input_ids)
        if f.start_position != NO_ANSWER:
            example = examples[f.example_index]
            text = example.context[f.offsets[f.start_position][0] : f.offsets[f.end_position][1]]
            assert text == example.answers[0]
            found.add(f.example_index)
    assert found == set(range(len(examples)))
    starts, ends = one_hot_logits(features)
    predicted = best_spans(examples, features, starts, ends, allow_impossible=False, max_answer_tokens=200)
    assert predicted == {e.id: e.answers[0] for e in examples}


def test_windows_overlap_by_stride(squad_fixture, tokenizer):
    features = featurize(read_squad(squad_fixture)[:1], tokenizer, max_length=128, stride=32)
    for a, b in itertools.pairwise(features):
        tail = [span for span in a.offsets if span is not None][-32:]
        head = [span for span in b.offsets if span is not None][:32]
        assert tail == head


WORDS = ["river", "stone", "green", "house", "music", "paper", "light", "table"]
ANSWER = "golden ancient key"


def long_example(tokenizer, answer_word: int, n_words: int = 200) -> QAExample:
    """A context of one-token words with ANSWER starting at word `answer_word`."""
    words = [WORDS[i % len(WORDS)] for i in range(n_words)]
    words[answer_word : answer_word + 3] = ANSWER.split()
    context = " ".join(words) + "."
    assert len(tokenizer.tokenize(context)) == n_words + 1  # so word i is context token i
    start = context.index(ANSWER)
    return QAExample("long", "where is the key?", context, (ANSWER,), (start,), False)


def test_answer_crossing_the_first_window_is_found_in_a_later_one(tokenizer):
    question_tokens = len(tokenizer.tokenize("where is the key?"))
    per_window = 64 - 3 - question_tokens  # context tokens per window
    example = long_example(tokenizer, answer_word=per_window - 2)  # last 2 tokens in, 1 out
    features = featurize([example], tokenizer, max_length=64, stride=16)
    assert len(features) > 2
    first = features[0]
    last_char = [span for span in first.offsets if span is not None][-1][1]
    start_char = example.answer_starts[0]
    assert start_char < last_char < start_char + len(ANSWER)  # the first window cuts the answer
    assert (first.start_position, first.end_position) == (NO_ANSWER, NO_ANSWER)
    holding = [f for f in features if f.start_position != NO_ANSWER]
    assert len(holding) == 1 and holding[0] is features[1]
    starts, ends = one_hot_logits(features)
    assert best_spans([example], features, starts, ends, allow_impossible=True) == {"long": ANSWER}


def test_answer_at_the_end_of_a_long_context(tokenizer):
    example = long_example(tokenizer, answer_word=197)
    features = featurize([example], tokenizer, max_length=64, stride=16)
    assert [f.start_position != NO_ANSWER for f in features][-1]
    starts, ends = one_hot_logits(features)
    assert best_spans([example], features, starts, ends, allow_impossible=False) == {"long": ANSWER}


def test_question_too_long_for_the_window(tokenizer):
    """Cut to leave stride + 1 context tokens (tests/test_truncation.py checks the warning); refused only
    where no question fits."""
    example = QAExample("q-long", "why " * 60, "some context", ("some",), (0,), False)
    features = featurize([example], tokenizer, max_length=64, stride=16)
    assert features and all(len(f.input_ids) <= 64 for f in features)
    with pytest.raises(PtuneError, match="'q-long'.*raise max_length"):
        featurize([example], tokenizer, max_length=20, stride=16)


def spans_fixture() -> tuple[list[QAExample], list[QAFeature]]:
    """One example, one window: [CLS] q [SEP] "new york city" [SEP], context at tokens 3..5."""
    example = QAExample("e", "q", "new york city", ("new york",), (0,), False)
    offsets = (None, None, None, (0, 3), (4, 8), (9, 13), None)
    return [example], [QAFeature(0, (101, 1, 102, 2, 3, 4, 102), None, offsets)]


def test_best_spans_null_answer_and_limits():
    examples, features = spans_fixture()
    starts = torch.tensor([[4.0, 9.0, 0.0, 3.0, 1.0, 0.0, 9.0]])  # high scores on non-context tokens
    ends = torch.tensor([[4.0, 9.0, 0.0, 0.0, 3.0, 2.0, 9.0]])
    # best span "new york" scores 6; null scores 8
    assert best_spans(examples, features, starts, ends, allow_impossible=False) == {"e": "new york"}
    assert best_spans(examples, features, starts, ends, allow_impossible=True) == {"e": ""}
    assert best_spans(examples, features, starts, ends, allow_impossible=True, null_threshold=3.0) == {"e": "new york"}
    # one-token spans: new 3 + 0, york 1 + 3, city 0 + 2
    assert best_spans(examples, features, starts, ends, allow_impossible=False, max_answer_tokens=1) == {"e": "york"}
    # an end before the start is never chosen
    backwards_end = torch.tensor([[0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0]])
    backwards_start = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 5.0, 0.0]])
    assert best_spans(examples, features, backwards_start, backwards_end, allow_impossible=False) == {"e": "city"}


def test_collate_qa_pads_and_masks(squad_fixture, tokenizer):
    features = featurize(read_squad(squad_fixture), tokenizer, max_length=128, stride=32)[:3]
    batch = collate_qa(features, pad_id=tokenizer.pad_token_id)
    width = max(len(f.input_ids) for f in features)
    for key in ("input_ids", "attention_mask", "token_type_ids", "span_mask"):
        assert batch[key].shape == (3, width)
    assert batch["start_positions"].shape == batch["end_positions"].shape == (3,)
    assert batch["span_mask"][:, 0].all()
    for row, f in enumerate(features):
        mask = batch["span_mask"][row, 1 : len(f.input_ids)].tolist()
        assert mask == [span is not None for span in f.offsets[1:]]
        assert not batch["span_mask"][row, len(f.input_ids) :].any()


# -- metric -------------------------------------------------------------------------------------


def test_normalize_answer():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("an apple, a pear and THE plum.") == "apple pear and plum"
    assert normalize_answer("theory") == "theory"  # articles only as whole words


def test_exact_match_and_f1_by_hand():
    assert exact_match("the Eiffel tower", "Eiffel Tower") == 1.0
    assert f1("the Eiffel tower", "Eiffel Tower") == 1.0
    assert exact_match("1,882.", "1882") == 1.0
    # pred [eiffel, tower, in, paris] vs gold [eiffel, tower]: P = 2/4, R = 2/2, F1 = 2/3
    assert exact_match("Eiffel Tower in Paris", "the Eiffel Tower") == 0.0
    assert f1("Eiffel Tower in Paris", "the Eiffel Tower") == pytest.approx(2 / 3)
    # repeated tokens count once per occurrence: [x, y, y] vs [y, y, z]: 2 shared, P = R = 2/3
    assert f1("x y y", "y y z") == pytest.approx(2 / 3)
    assert f1("x y y", "y z z") == pytest.approx(2 * (1 / 3) * (1 / 3) / (2 / 3))
    assert f1("cat", "dog") == 0.0
    assert f1("", "") == 1.0 and f1("", "dog") == 0.0 and f1("the", "") == 1.0


def test_squad_scores_by_hand():
    examples = [
        QAExample("1", "q", "c", ("Denver Broncos", "Broncos"), (0, 7), False),
        QAExample("2", "q", "c", ("Eiffel Tower",), (0,), False),
        QAExample("3", "q", "c", (), (), True),
        QAExample("4", "q", "c", (), (), True),
    ]
    predictions = {"1": "the Broncos", "2": "Eiffel Tower in Paris", "3": "", "4": "Paris", "extra": "x"}
    scores = squad_scores(predictions, examples)
    # EM: 1 (matches "Broncos"), 0, 1 (empty for impossible), 0 -> 2/4
    # F1: 1, 2/3, 1, 0 -> (8/3)/4
    assert scores["exact"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(100 * (8 / 3) / 4)
    assert squad_scores({"2": ""}, examples[1:2]) == {"exact": 0.0, "f1": 0.0}
    with pytest.raises(ValueError, match="no prediction"):
        squad_scores({"1": "x"}, examples)


# -- span head ----------------------------------------------------------------------------------


def test_span_head_shapes_and_mask():
    torch.manual_seed(0)
    head = SpanHead(16)
    hidden = torch.randn(2, 5, 16)
    mask = torch.tensor([[False, False, True, True, False], [False, True, True, True, True]])
    start, end = head(hidden, {"span_mask": mask})
    assert start.shape == end.shape == (2, 5)
    lowest = torch.finfo(start.dtype).min
    allowed = mask.clone()
    allowed[:, 0] = True  # the no-answer position stays open
    for logits in (start, end):
        assert (logits[~allowed] == lowest).all()
        assert (logits[allowed] > -1e3).all()
    unmasked, _ = head.eval()(hidden)
    assert (unmasked > -1e3).all()


def test_span_head_loss_decreases():
    torch.manual_seed(0)
    head = SpanHead(8, dropout=0.0)
    hidden = torch.randn(4, 6, 8)
    batch = {"span_mask": torch.ones(4, 6, dtype=torch.bool),
             "start_positions": torch.tensor([0, 2, 3, 1]), "end_positions": torch.tensor([0, 4, 3, 2])}
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = head.loss(*head(hidden, batch), *head.targets(batch))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    manual = (torch.nn.functional.cross_entropy(head(hidden, batch)[0], batch["start_positions"])
              + torch.nn.functional.cross_entropy(head(hidden, batch)[1], batch["end_positions"])) / 2
    assert head.loss(*head(hidden, batch), *head.targets(batch)).item() == pytest.approx(manual.item())
