"""ptune: parameter-efficient prompt tuning of frozen Hugging Face transformers.

    import ptune
    task = ptune.get_task("rotten_tomatoes")
    backbone = ptune.load_backbone("minilm")
    model = ptune.PromptModel.for_task(backbone, task, ptune.MethodConfig(method="deep"))
    ptune.train(model, task, ptune.TrainConfig(epochs=1, train_limit=200, eval_limit=100), out_dir="runs/rt")
    scores = ptune.evaluate(model, task.test[:200])             # {"accuracy": ...}
    ptune.predict(model, [ptune.TextExample("a triumph")])      # ["positive"]
    model = ptune.load_prompt("runs/rt/prompt.safetensors", backbone)   # the saved prompt

A small budget, to try the API in seconds: for a real run drop the limits and leave ``epochs``
unset (each method has its default). Names load on first use: ``import ptune`` does not import
torch or transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ptune.lazy import exports

__version__ = "0.1.0"

# public name -> the module that defines it
_HOMES = {
    "Backbone": "ptune.model.backbones",
    "load_backbone": "ptune.model.backbones",
    "load_prompt": "ptune.storage.prompt_files",
    "read_header": "ptune.storage.prompt_files",
    "save_prompt": "ptune.storage.prompt_files",
    "MethodConfig": "ptune.config",
    "QAExample": "ptune.data.examples",
    "TaggedExample": "ptune.data.examples",
    "TextExample": "ptune.data.examples",
    "Task": "ptune.data.tasks",
    "from_files": "ptune.data.tasks",
    "get_task": "ptune.data.tasks",
    "PtuneError": "ptune.errors",
    "evaluate": "ptune.infer.predict",
    "predict": "ptune.infer.predict",
    "PromptModel": "ptune.model.prompt_model",
    "TrainConfig": "ptune.config",
    "train": "ptune.training.loop",
}

__all__ = [
    "Backbone", "MethodConfig", "PromptModel", "PtuneError", "QAExample", "Task", "TaggedExample", "TextExample",
    "TrainConfig", "evaluate", "from_files", "get_task", "load_backbone", "load_prompt", "predict", "read_header",
    "save_prompt", "train",
]

if TYPE_CHECKING:
    from ptune.config import MethodConfig, TrainConfig
    from ptune.data.examples import QAExample, TaggedExample, TextExample
    from ptune.data.tasks import Task, from_files, get_task
    from ptune.errors import PtuneError
    from ptune.infer.predict import evaluate, predict
    from ptune.model.backbones import Backbone, load_backbone
    from ptune.model.prompt_model import PromptModel
    from ptune.storage.prompt_files import load_prompt, read_header, save_prompt
    from ptune.training.loop import train


__getattr__, __dir__ = exports("ptune", _HOMES, globals())
