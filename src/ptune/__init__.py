"""ptune: parameter-efficient prompt tuning of frozen Hugging Face transformers.

    import ptune
    task = ptune.get_task("rotten_tomatoes")
    model = ptune.PromptModel.for_task(ptune.load_backbone("minilm"), task, ptune.MethodConfig(method="deep"))
    ptune.train(model, task, out_dir="runs/rt")
    scores = ptune.evaluate(model, task.test, task.metric)   # {"accuracy": ...}
"""

from .backbones import Backbone, load_backbone
from .checkpoint import load_prompt, read_header, save_prompt
from .config import MethodConfig
from .data import TaggedExample, Task, TextExample, from_files, get_task
from .errors import PtuneError
from .evaluation import evaluate, predict
from .model import PromptModel
from .training import TrainConfig, train

__version__ = "0.1.0"

__all__ = [
    "Backbone", "MethodConfig", "PromptModel", "PtuneError", "TaggedExample", "Task", "TextExample", "TrainConfig",
    "evaluate", "from_files", "get_task", "load_backbone", "load_prompt", "predict", "read_header", "save_prompt",
    "train",
]
