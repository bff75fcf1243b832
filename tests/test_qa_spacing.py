"""Issue 12: a pair's second text and probing objects are tokenised as the model sees them in running text.

Decoder QA on SmolLM2's byte-level BPE (nothing between a pair's texts): the context's first word
keeps its leading space, and answers are still cut from the original context. Probing on a
Llama-2-style SentencePiece tokenizer: objects carry no lone ``▁``.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

from ptune.data.examples import QAExample
from ptune.tasks.qa import NO_ANSWER, best_spans, featurize

QUESTION = "Who visited Brussels ?"
CONTEXT = ("Peter Blackburn visited Brussels yesterday afternoon . The EU rejects German call to boycott "
           "British lamb , said Werner Zwingmann on Wednesday 1996-08-22 in Bonn .")
ANSWERS = ["Peter Blackburn", "Brussels", "Werner Zwingmann", "1996-08-22", "Bonn"]


def _example(answer: str, index: int) -> QAExample:
    return QAExample(f"q{index}", QUESTION, CONTEXT, (answer,), (CONTEXT.index(answer),))


@pytest.fixture(scope="module")
def smol(tiny_llama):
    return tiny_llama.tokenizer


def test_context_reads_after_the_question(smol):
    features = featurize([_example("Peter Blackburn", 0)], smol, max_length=200, stride=16)
    assert len(features) == 1
    running = smol(QUESTION + " " + CONTEXT)["input_ids"]
    assert list(features[0].input_ids) == running
    first = next(t for t, span in enumerate(features[0].offsets) if span is not None)
    assert smol.convert_ids_to_tokens(features[0].input_ids[first]).startswith("Ġ")  # ĠPeter, not Peter
    assert features[0].offsets[first] == (0, len("Peter"))


@pytest.mark.parametrize("max_length", [200, 20])
def test_offsets_point_into_the_original_context(smol, max_length):
    examples = [_example(a, i) for i, a in enumerate(ANSWERS)]
    features = featurize(examples, smol, max_length=max_length, stride=4)
    if max_length == 20:
        assert len(features) > len(examples)  # strided windows
    for feature in features:
        for token, span in zip(feature.input_ids, feature.offsets):
            if span is not None:
                assert smol.decode([token]).strip() == CONTEXT[span[0]:span[1]].strip()


@pytest.mark.parametrize("max_length", [200, 20])
def test_answers_are_cut_exactly_from_the_original_context(smol, max_length):
    examples = [_example(a, i) for i, a in enumerate(ANSWERS)]
    features = featurize(examples, smol, max_length=max_length, stride=4)
    width = max(len(f.input_ids) for f in features)
    starts, ends = torch.full((len(features), width), -10.0), torch.full((len(features), width), -10.0)
    found = set()
    for row, feature in enumerate(features):
        if feature.start_position != NO_ANSWER:
            found.add(feature.example_index)
            starts[row, feature.start_position] = ends[row, feature.end_position] = 10.0
    assert found == set(range(len(examples)))
    predictions = best_spans(examples, features, starts, ends, allow_impossible=False)
    for example in examples:
        predicted = predictions[example.id]
        assert CONTEXT.find(predicted) >= 0 and predicted.strip() == example.answers[0]
    assert predictions["q0"] == "Peter Blackburn"  # the context's first word: no shifted-off character


def test_a_context_that_starts_with_a_space_gets_no_second_one(smol):
    context = " " + CONTEXT
    example = QAExample("q", QUESTION, context, ("Peter",), (1,))
    [feature] = featurize([example], smol, max_length=200, stride=16)
    assert list(feature.input_ids) == smol(QUESTION + context)["input_ids"]
    assert context[slice(*feature.offsets[feature.start_position])].strip() == "Peter"


def test_encoders_keep_their_pair_encoding():
    from transformers import AutoTokenizer

    from ptune.model.backbones import resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve("minilm"))
    example = _example("Brussels", 0)
    [feature] = featurize([example], tokenizer, max_length=200, stride=16)
    encoded = tokenizer(QUESTION, CONTEXT, return_offsets_mapping=True)
    assert list(feature.input_ids) == encoded["input_ids"]
    side = encoded.sequence_ids()
    assert list(feature.offsets) == [tuple(span) if s == 1 else None for span, s in zip(encoded["offset_mapping"], side)]


@pytest.fixture(scope="module", params=["llama", "llama-2-tokenizer-json"])
def sentencepiece_llama(request, tmp_path_factory):
    """The tiny Llama's SentencePiece BPE tokenizer as transformers builds LlamaTokenizer today
    (Metaspace, prepend_scheme=first), and the same vocabulary with Llama-2's own tokenizer.json
    pipeline (normaliser Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer), where an explicit
    leading space adds a lone ``▁`` token."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import families

    tokenizer = families.Zoo(tmp_path_factory.mktemp("families")).backbone("llama").tokenizer
    if request.param == "llama":
        return tokenizer
    from tokenizers import normalizers
    from transformers import PreTrainedTokenizerFast

    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = None
    legacy = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    assert legacy.convert_ids_to_tokens(legacy.encode(" Europe", add_special_tokens=False)) == ["▁", "▁Europe"]
    return legacy


def test_probe_objects_carry_no_lone_word_marker(sentencepiece_llama):
    from ptune.analysis.probing.learned import _words_ids, init_vectors
    from ptune.analysis.probing.relations import Fact, Relation, object_token_ids, single_token

    tokenizer = sentencepiece_llama
    lone = tokenizer.convert_tokens_to_ids("▁")
    objects = ["Europe", "Germany", "Paris", "Asia", "London"]
    ids = object_token_ids(tokenizer, objects)
    assert all(lone not in row for row in ids)
    for obj, row in zip(objects, ids):
        assert tokenizer.convert_ids_to_tokens(row[0]).startswith("▁")  # the word marks itself
        assert tokenizer.encode("The capital is " + obj, add_special_tokens=False)[-len(row):] == row
    relation = Relation("r", (Fact("France", ("Europe",)), Fact("Japan", ("Asia",))), ("Asia", "Europe"))
    single = single_token(relation, tokenizer)
    assert "Europe" in single.candidates  # one token in running text, so kept
    words = _words_ids(tokenizer, "capital of", True)
    assert lone not in words and words == tokenizer.encode("The capital of", add_special_tokens=False)[1:]
    assert init_vectors("[P] The capital of {subject} is", tokenizer, torch.randn(len(tokenizer), 4)).shape == (1, 4)
