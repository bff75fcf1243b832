"""``ptune export --embeds`` (``interop.embeds``): the exported vectors and template description build, for
any text, exactly the input embeddings ptune itself feeds the model (prompt and P-tuning, prompt tokens on
both sides of the text, truncation included); deep prompts are refused in one line; the client helper
imports no more than torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from families import Zoo
from safetensors.torch import load_file

from ptune.cli import main
from ptune.config import MethodConfig
from ptune.errors import PtuneError
from ptune.infer.decoding import CachedSteps, prompt_features
from ptune.interop.embeds import EMBEDS_FILE, META_FILE, build_prompt_embeds, export_embeds, load_embeds
from ptune.model.prompt_model import PromptModel
from ptune.storage.prompt_files import save_prompt

TEXTS = ["The capital of France is", "a gripping , beautifully acted film", "x",
         "Once upon a time, a small dog lived in a house by the sea and it was very happy there for many years"]
METHODS = {
    "prompt": {"method": "prompt", "length": 4},
    "ptuning": {"method": "ptuning", "length": 4, "encoder": "mlp",
                "template": "[P]*2 Question: {text} [P] Answer: [P]"},
    "ptuning-short": {"method": "ptuning", "length": 3, "encoder": "none", "template": "[P] {text} [P]*2 {label}",
                      "max_length": 12},  # the long text is cut to fit, as ptune cuts it
    "prompt-peft": {"method": "prompt", "length": 3, "peft_layout": True},
}


def saved(backbone, folder, name, options):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the P-tuning encoder's init fit is slow with two threads on tiny models
    try:
        model = PromptModel(backbone, MethodConfig(**options), ["negative", "positive"])
        model.initialise(seed=0)
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    path = folder / f"{name}.safetensors"
    save_prompt(path, model, task_name=name, metric="accuracy")
    return path, model.eval()


def ptune_input_embeds(model, text) -> torch.Tensor:
    """The inputs_embeds ptune's generation passes to the transformer for ``text`` alone: [T, H]."""
    captured = []
    hook = model.transformer.register_forward_pre_hook(lambda _, args, kwargs: captured.append(kwargs["inputs_embeds"]),
                                                       with_kwargs=True)
    try:
        with torch.inference_mode():
            CachedSteps(model, prompt_features(model, [text])).start()
    finally:
        hook.remove()
    return captured[0][0]


@pytest.mark.parametrize("method", METHODS)
def test_built_embeddings_equal_ptunes_own(tiny_llama, tmp_path, method):
    path, model = saved(tiny_llama, tmp_path, method, METHODS[method])
    folder = export_embeds(path, tmp_path / "out", tiny_llama)
    vectors, meta = load_embeds(folder)
    embedding = tiny_llama.model.get_input_embeddings()
    assert vectors.dtype == embedding.weight.dtype and meta["dtype"] == "float32"
    assert tuple(vectors.shape) == (model.template.num_prompts, tiny_llama.embedding_size)
    for text in TEXTS:
        built = build_prompt_embeds(tiny_llama.tokenizer, embedding, vectors, meta, text)
        assert torch.equal(built, ptune_input_embeds(model, text)), (method, text)
    assert any(s.get("text") is not None for s in meta["sequence"]) and meta["template"] == model.template.source


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_other_tokenizers(tmp_path_factory, tmp_path, family):
    """SentencePiece (Llama-2: words mark their own start) and GPT-2's byte-level BPE (a space before a word)."""
    backbone = Zoo(tmp_path_factory.mktemp(f"embeds-{family}")).backbone(family)
    path, model = saved(backbone, tmp_path, "p", METHODS["ptuning"])
    vectors, meta = load_embeds(export_embeds(path, tmp_path / "out", backbone))
    for text in TEXTS:
        built = build_prompt_embeds(backbone.tokenizer, backbone.model.get_input_embeddings(), vectors, meta, text)
        assert torch.equal(built, ptune_input_embeds(model, text)), text


def test_cli_export_and_refusals(tiny_llama, minilm, tmp_path, capsys):
    path, _ = saved(tiny_llama, tmp_path, "p", METHODS["ptuning"])
    assert main(["export", str(path), "--embeds", str(tmp_path / "out")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["files"] == sorted([EMBEDS_FILE, META_FILE])
    assert set(load_file(str(tmp_path / "out" / EMBEDS_FILE))) == {"vectors"}

    deep, _ = saved(tiny_llama, tmp_path, "deep", {"method": "deep", "length": 2})
    assert main(["export", str(deep), "--embeds", str(tmp_path / "deep-out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "deep prompt" in err and "ptune serve" in " ".join(err.split())
    assert not (tmp_path / "deep-out").exists()

    encoder, _ = saved(minilm, tmp_path, "enc", METHODS["prompt"])
    with pytest.raises(PtuneError, match="causal LM"):
        export_embeds(encoder, tmp_path / "enc-out", minilm)
    (tmp_path / "afile").write_text("")
    assert main(["export", str(path), "--embeds", str(tmp_path / "afile")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["export", str(path), "--embeds", str(tmp_path / "a"), "--peft", str(tmp_path / "b")]) == 2
    assert "not allowed with" in capsys.readouterr().err  # one target at a time
    with pytest.raises(PtuneError, match="not a `ptune export --embeds` folder"):
        load_embeds(tmp_path)


def test_the_client_helper_needs_only_torch():
    code = ("import sys; import ptune.interop.embeds as e; assert callable(e.build_prompt_embeds); "
            "print(sorted(m for m in ('transformers', 'safetensors', 'ptune.model') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
