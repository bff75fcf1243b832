"""Input prompts as ``prompt_embeds``, for engines that take input embeddings instead of prompt adapters
(vLLM from 0.10: ``LLM(..., enable_prompt_embeds=True)``).

``export_embeds`` writes a Prompt Tuning or P-tuning task as its prompt vectors in the backbone's dtype
(``prompt_embeds.safetensors``, tensor ``vectors`` [P, H]) and where they go around a text
(``prompt_embeds.json``: the template as a sequence of token ids, prompt vectors and the text).
``build_prompt_embeds`` turns a text into the ``prompt_embeds`` [T, H] that ptune itself feeds the model;
it needs only torch and a tokenizer (this module imports nothing else at load). Deep prompts live inside
every layer's attention, which input embeddings cannot reach: they are refused (serve them with
``ptune serve``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ptune.errors import PtuneError

EMBEDS_FILE = "prompt_embeds.safetensors"
META_FILE = "prompt_embeds.json"
FORMAT = "ptune-prompt-embeds"


def prompt_ids(tokenizer, meta: dict[str, Any], text: str) -> tuple[list[int], list[int]]:
    """The token ids of ``text`` in the exported template, and per position the prompt vector it takes
    (-1: the token's own embedding). ``meta``: the ``prompt_embeds.json`` of an export."""
    ids: list[int] = []
    index: list[int] = []
    for part in meta["sequence"]:
        if "ids" in part:
            ids += part["ids"]
            index += [-1] * len(part["ids"])
        elif "prompt" in part:
            start, count = part["prompt"]
            ids += [0] * count
            index += list(range(start, start + count))
        else:  # the text, as it reads at its place: a leading separator when it follows other words
            spaced = part["text"] + text if text else text
            text_ids = list(tokenizer(spaced, add_special_tokens=False)["input_ids"])[: meta["max_text_tokens"]]
            ids += text_ids
            index += [-1] * len(text_ids)
    return ids, index


def build_prompt_embeds(tokenizer, embedding_layer: torch.nn.Module, vectors: torch.Tensor, meta: dict[str, Any],
                        text: str) -> torch.Tensor:
    """The ``prompt_embeds`` of ``text`` for the task exported as ``vectors`` [P, H] and ``meta``: its
    template's tokens embedded by ``embedding_layer`` (the model's ``get_input_embeddings()``), the prompt
    vectors in their places -> [T, H], in the embedding layer's dtype. Generation continues after it."""
    ids, index = prompt_ids(tokenizer, meta, text)
    weight = embedding_layer.weight
    ids_tensor = torch.tensor(ids, dtype=torch.long, device=weight.device)
    index_tensor = torch.tensor(index, dtype=torch.long, device=weight.device)
    with torch.no_grad():
        embeds = embedding_layer(ids_tensor)
        chosen = vectors.to(device=embeds.device, dtype=embeds.dtype)[index_tensor.clamp(min=0)]
        return torch.where((index_tensor >= 0).unsqueeze(-1), chosen, embeds)


def load_embeds(folder: str | Path) -> tuple[torch.Tensor, dict[str, Any]]:
    """An export folder's vectors [P, H] and its meta."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        vectors = load_file(str(folder / EMBEDS_FILE))["vectors"]
    except (OSError, ValueError, KeyError) as error:
        raise PtuneError(f"{folder}: not a `ptune export --embeds` folder ({error})") from None
    if meta.get("format") != FORMAT:
        raise PtuneError(f"{folder / META_FILE}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    return vectors, meta


def export_embeds(prompt_path: str | Path, out_dir: str | Path, backbone) -> Path:
    """Write the input prompt of the prompt file at ``prompt_path`` for ``prompt_embeds`` into ``out_dir``, in
    the dtype of ``backbone``'s input embeddings (``--dtype auto`` loads a checkpoint in its own, as vLLM does)."""
    from safetensors.torch import save_file

    from ptune.infer.decoding import check_decoder, prompt_features
    from ptune.storage.atomic import atomic_write
    from ptune.storage.prompt_files import load_prompt

    prompt_path, out_dir = Path(prompt_path), Path(out_dir)
    model = load_prompt(prompt_path, backbone)
    if (why := refusal(prompt_path, model.header["method"])) is not None:
        raise PtuneError(why)
    check_decoder(model)
    if model.input_prompt is None:
        raise PtuneError(f"{prompt_path}: its template has no [P] token, so there is no prompt to export")
    if model.template.has_slot("text_pair"):
        raise PtuneError(f"{prompt_path}: template {model.template.source!r} has a {{text_pair}} slot; prompt_embeds "
                         "continue one text — export a prompt whose template has only {text}")
    meta = describe(model)
    dtype = backbone.model.get_input_embeddings().weight.dtype
    meta["dtype"] = str(dtype).removeprefix("torch.")
    with torch.no_grad():  # P-tuning: the encoder's output, what the model reads
        vectors = model.input_prompt().detach().to(dtype).contiguous().cpu()
    probe = "The capital of France is Paris, and 1996 was a year."
    expected = prompt_features(model, [probe])[0]
    ids, index = prompt_ids(backbone.tokenizer, meta, probe)
    if (index != expected.prompt_index  # placeholder ids differ and do not matter: their embeddings are replaced
            or [t for t, p in zip(ids, index) if p < 0] != [t for t, p in zip(expected.input_ids, index) if p < 0]):
        raise PtuneError(f"{prompt_path}: template {model.template.source!r} could not be described for prompt_embeds "
                         "(its tokens differ from ptune's own); report this template and backbone to ptune")
    if out_dir.exists() and not out_dir.is_dir():
        raise PtuneError(f"--embeds {out_dir}: is a file; give a folder for the exported files")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / EMBEDS_FILE,
                 lambda tmp: save_file({"vectors": vectors}, str(tmp), metadata={"format": FORMAT}))
    atomic_write(out_dir / META_FILE, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8"))
    return out_dir


def refusal(prompt_path, method: dict[str, Any]) -> str | None:
    """Why the prompt file's method (its header's ``method``) cannot go as prompt_embeds, or None."""
    if method.get("method") == "deep":
        return (f"{prompt_path}: a deep prompt (keys/values inside the attention of every prompted layer) cannot "
                "be given as prompt_embeds, which only replace input embeddings; serve it with `ptune serve` "
                "(POST /generate or /v1/completions)")
    if method.get("method") == "finetune" or method.get("tune_backbone"):
        return (f"{prompt_path}: a {method.get('method')} prompt file tunes the backbone's own weights, which "
                "prompt_embeds cannot carry; serve it with `ptune serve`")
    return None


def describe(model) -> dict[str, Any]:
    """The template of ``model`` (a PromptModel) as ``prompt_ids`` reads it: the tokenizer's start tokens,
    each part in order (template words as ids, ``[P]`` as vector ranges, ``{text}`` with its separator;
    ``{label}`` adds nothing on a causal LM), without the closing special tokens (generation goes on)."""
    encoder, parts = model.encoder, model.template.parts
    sequence: list[dict[str, Any]] = []
    start, next_prompt = 0, 0
    if encoder.prompts_before_specials:  # PEFT's layout: the first prompt before the start tokens
        sequence.append({"prompt": [0, parts[0].count]})
        start, next_prompt = 1, parts[0].count
    sequence.append({"ids": list(encoder.layout.prefix)})
    for index, part in enumerate(parts[start:], start):
        if part.kind == "prompt":
            sequence.append({"prompt": [next_prompt, part.count]})
            next_prompt += part.count
        elif part.kind == "words":
            sequence.append({"ids": list(encoder._word_ids[index])})
        elif part.value == "text":
            sequence.append({"text": encoder.spacing.text("x", after_text=encoder._text_after)[:-1]})
    sequence = [part for part in sequence if part.get("ids", True)]
    text_ids = encoder.spacing.ids(["x"], after_text=encoder._text_after)[0]
    fixed = len(model.encode([_example("x")])[0].input_ids) - len(text_ids)  # every token but the text's
    backbone = model.backbone
    return {"format": FORMAT, "version": 1, "backbone": backbone.name, "model_type": backbone.config.model_type,
            "method": model.config.method, "template": model.template.source,
            "num_vectors": encoder.template.num_prompts,
            "hidden_size": backbone.embedding_size, "max_text_tokens": model.config.max_length - fixed,
            "sequence": sequence}


def _example(text: str):
    from ptune.data.examples import TextExample

    return TextExample(text)
