"""Mixed-task batches and one-pass ensembles on real MiniLM weights."""

from __future__ import annotations

import pytest
import torch

from ptune.config import MethodConfig
from ptune.data import TaggedExample, TextExample
from ptune.batch.encoding import collate
from ptune.errors import PtuneError
from ptune.infer.bank import PromptBank, ensemble_predict
from ptune.model.prompt_model import PromptModel

TEXTS = [TextExample("a gripping , beautifully acted film"), TextExample("dull and overlong"),
         TextExample("the plot goes nowhere at all , and the jokes land even less often than that")]
SENTENCES = [TaggedExample(("EU", "rejects", "German", "call")), TaggedExample(("Peter", "Blackburn", "visited", "Brussels"))]
TAGS = ["O", "B-ORG", "B-MISC", "B-PER", "I-PER", "B-LOC"]


def model(backbone, method, *, tagging=False, seed=0, **options):
    m = PromptModel(backbone, MethodConfig(method=method, **options), TAGS if tagging else ["negative", "positive"],
                    kind="tagging" if tagging else "classification")
    m.initialise(seed=seed)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)  # distinct, non-trivial prompts and heads
    return m.eval()


def alone(m, examples):
    """Logits of each example run on its own task's model alone, per example."""
    logits = m(collate(m.encode(examples), pad_id=m.encoder.pad_id, left_pad=m.encoder.decoder))
    if m.kind.name != "tagging":
        return list(logits)
    return list(logits.split([len(e.tokens) for e in examples]))


@pytest.mark.parametrize("method", ["prompt", pytest.param("ptuning", marks=pytest.mark.slow), "deep"])
def test_mixed_batch_equals_each_task_alone(minilm, method):
    tasks = {
        "a": model(minilm, method, seed=1, length=5),
        "b": model(minilm, method, seed=2, length=9, **({"layers": "top:2"} if method == "deep" else {})),
        "tags": model(minilm, method, tagging=True, seed=3, length=7),
    }
    bank = PromptBank(tasks)
    items = [("a", TEXTS[0]), ("tags", SENTENCES[0]), ("b", TEXTS[1]), ("a", TEXTS[2]), ("tags", SENTENCES[1]),
             ("b", TEXTS[0])]
    mixed = bank(bank.collate(bank.encode(items)))
    for (name, example), got in zip(items, mixed):
        expected = alone(tasks[name], [example])[0]
        # Prefixes of std 1 (the default init) make attention scores large: float32 rounding of a different
        # batch composition reaches ~2e-5 on the logits.
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_mixed_batch_of_different_methods(minilm):
    tasks = {"soft": model(minilm, "prompt", seed=1), "pt": model(minilm, "ptuning", seed=2),
             "deep": model(minilm, "deep", seed=3, layers="bottom:3"), "ner": model(minilm, "deep", tagging=True, seed=4)}
    bank = PromptBank(tasks)
    items = [("soft", TEXTS[0]), ("pt", TEXTS[1]), ("deep", TEXTS[2]), ("ner", SENTENCES[0]), ("deep", TEXTS[0])]
    for (name, example), got in zip(items, bank(bank.collate(bank.encode(items)))):
        torch.testing.assert_close(got, alone(tasks[name], [example])[0], atol=1e-5, rtol=1e-5)
    predictions = bank.predict(items)
    assert predictions[0] in ("negative", "positive") and len(predictions[3]) == 4


def test_ensemble_runs_one_backbone_pass(minilm):
    members = [model(minilm, "deep", seed=s) for s in range(5)]
    calls = []
    handle = minilm.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        voted = ensemble_predict(members, TEXTS, combine="vote")
        assert len(calls) == 1
        mean = ensemble_predict(members, TEXTS, combine="mean")
    finally:
        handle.remove()
    # Against each member alone: the mean of their probabilities, and their majority.
    probs = torch.stack([torch.stack(alone(m, TEXTS)).softmax(-1) for m in members])  # [N, B, C]
    assert mean == [["negative", "positive"][i] for i in probs.mean(0).argmax(-1).tolist()]
    votes = probs.argmax(-1)  # [N, B]
    assert voted == [["negative", "positive"][int(v.sum() * 2 > len(members))] for v in votes.T]


def test_ensemble_members_must_share_a_task(minilm):
    with pytest.raises(PtuneError, match="same task"):
        ensemble_predict([model(minilm, "deep"), model(minilm, "deep", tagging=True)], TEXTS)


def test_bank_refuses_a_finetuned_member(minilm):
    with pytest.raises(PtuneError, match="own backbone copy"):
        PromptBank({"ft": PromptModel(minilm, MethodConfig(method="finetune"), ["a", "b"])})
