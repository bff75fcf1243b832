"""Data: examples, the readers that make them from files, and the tasks that hold them."""

from ptune.data.columns import Columns
from ptune.data.examples import ChoiceExample, Example, QAExample, TaggedExample, TextExample
from ptune.data.readers import read_conll, read_examples, read_hf, read_table
from ptune.data.tasks import (
    BUILTIN,
    Task,
    check_labels,
    conll2003,
    from_dataset,
    from_files,
    get_task,
    label_set,
    rotten_tomatoes,
)

__all__ = [
    "BUILTIN",
    "ChoiceExample",
    "Columns",
    "Example",
    "QAExample",
    "TaggedExample",
    "Task",
    "TextExample",
    "check_labels",
    "conll2003",
    "from_dataset",
    "from_files",
    "get_task",
    "label_set",
    "read_conll",
    "read_examples",
    "read_hf",
    "read_table",
    "rotten_tomatoes",
]
