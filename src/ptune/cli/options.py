"""Shared by every command: the global flags, help that shows each option's default, dataclass fields as
options, the JSON config file, and the prompt file a command names. Nothing here imports torch."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

from ptune.bounds import Bound
from ptune.config import DeviceConfig, MethodConfig, TrainConfig
from ptune.cli.fewshot import KEYS as FEWSHOT_KEYS  # --shots and the few-shot selection
from ptune.data.columns import ROLES, Columns, option
from ptune.errors import PtuneError

GLOBAL_FLAGS = (
    (("-v", "--verbose"), "log progress details (default: off)"),
    (("-q", "--quiet"), "no progress bars (default: off)"),
    (("--trust-remote-code",), "allow model code from the hub (default: off)"),
)
# What each --*-column option names, and the names looked for without it (`data.columns.DEFAULTS`).
COLUMN_HELP = {
    "text": "the column holding the text to label (default: text)",
    "text_pair": "the column holding a second text, for pairs (default: text_pair, if there is one)",
    "label": "the column holding the label or score (default: label; ClassLabel ids become their names)",
    "tokens": "tagging: the column holding a sentence's words, a list or space-separated (default: tokens; "
              "CoNLL files: the column number, 0 the first)",
    "tags": "tagging: the column holding a tag per word (default: tags or ner_tags; CoNLL files: the column "
            "number, -1 the last)",
}
# Keys a config file may hold besides the MethodConfig and TrainConfig fields.
FILE_KEYS = ("task", "train", "dev", "test", "backbone", "out", "kind", "metric", "dataset", "dataset_config", "target",
             *(f"{role}_column" for role in ROLES))


def shown(value: Any) -> str:
    """A default as help text shows it: on/off for flags, none for unset."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


class DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with ``(default: ...)``, unless the help already speaks of its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.required
                or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: {shown(action.default).replace('%', '%%')})".lstrip()


def add_global_flags(parser: argparse.ArgumentParser, *, after_command: bool) -> None:
    """-v, -q and --trust-remote-code. After the command they default to SUPPRESS, so that leaving them out
    there keeps what was given before the command (``ptune -q train`` and ``ptune train -q`` both work)."""
    group = parser.add_argument_group("global options") if after_command else parser
    for flags, help_text in GLOBAL_FLAGS:
        group.add_argument(*flags, action="store_true", default=argparse.SUPPRESS if after_command else False,
                           help=help_text)


class OneLineParser(argparse.ArgumentParser):
    """A parser whose errors are one line on stderr (the option, the value, what to give) and exit code 2,
    as every other error of ptune; argparse's usage block would bury the line."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())  # an argument holding a newline stays on the line
        sys.stderr.write(f"{self.prog}: error: {text} (see `{self.prog} --help`)\n")
        sys.exit(2)


class CommandParser(OneLineParser):
    """A subcommand's parser: help with defaults, and the global flags accepted after the command too."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(**kwargs)
        add_global_flags(self, after_command=True)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        # argparse prints nothing for an option without help; give it its default at least
        if (action.help is None and action.option_strings and not action.required
                and action.default is not argparse.SUPPRESS):
            action.help = f"(default: {shown(action.default).replace('%', '%%')})"
        return action


def add_backbone_override(parser: argparse.ArgumentParser) -> None:
    """--backbone, and the device options of the backbone it loads."""
    parser.add_argument("--backbone", help="override the backbone recorded in the prompt file (default: that one)")
    add_device_options(parser)


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """--device, --dtype, --quantize and --device-map, in one group (``config.DeviceConfig``)."""
    add_dataclass_options(parser.add_argument_group("device options", "where and how the frozen backbone runs; "
                                                    "see README.md, Running on GPUs and clusters"), DeviceConfig)


def device_from(args: argparse.Namespace, config_file: dict | None = None) -> dict:
    """``load_backbone``'s device, dtype, quantize and device_map from the options (then the config file)."""
    try:
        return DeviceConfig.of(args, config_file)
    except PtuneError as error:
        source = (config_file or {}).get("__source__")
        raise PtuneError(f"{source}: {error}" if source else str(error)) from None


# -- the user's data -------------------------------------------------------------------------------
def add_data_options(parser: argparse.ArgumentParser, roles: Sequence[str] = ROLES, *, dataset: bool = True) -> None:
    """--dataset NAME [--dataset-config CONFIG] and the ``--*-column`` options for `roles`, in one group."""
    group = parser.add_argument_group(
        "your data", "columns of CSV/TSV/JSONL/Parquet files and datasets; see docs/DATA.md")
    if dataset:
        group.add_argument("--dataset", metavar="NAME",
                           help="a datasets dataset: a hub name (datasets.load_dataset(NAME, CONFIG)) or a folder "
                                "written by save_to_disk; its splits train, validation (or dev) and test serve as "
                                "train, dev and test")
        group.add_argument("--dataset-config", metavar="CONFIG", help="the dataset's configuration, e.g. sst2 for glue")
    for role in roles:
        group.add_argument(option(role), dest=f"{role}_column", metavar="COLUMN",
                           help=COLUMN_HELP[role])


def columns_from(args: argparse.Namespace, config_file: dict | None = None, recorded: dict | None = None) -> Columns:
    """The columns named by the options, then the config file; those `recorded` (a prompt's `task.source`) are
    looked for first where neither names one."""
    config_file = config_file or {}
    named = {role: getattr(args, f"{role}_column", None) or config_file.get(f"{role}_column") for role in ROLES}
    usual = Columns.from_dict((recorded or {}).get("columns"), "the prompt's recorded columns").given()
    return Columns(**{role: name for role, name in named.items() if name}, usual=usual)


# -- dataclass fields as options -------------------------------------------------------------------
def add_dataclass_options(parser: argparse.ArgumentParser, cls, skip: Sequence[str] = ()) -> None:
    """One ``--option`` per dataclass field, help from the field's metadata. The CLI default is None so a
    config file can fill what the command line leaves out; the help shows the field's own default."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if "default" not in help_text:
            help_text = f"{help_text} (default: {shown(f.default)})".lstrip()
        help_text = help_text.replace("%", "%%")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            kind = {"int": Bound(whole=True), "float": Bound()}.get(str(f.type).split(" |")[0], str)
            kind = f.metadata.get("parse", kind)  # a text option's own check (--device)
            parser.add_argument(flag, type=f.metadata.get("bound", kind), default=None, help=help_text,
                                choices=f.metadata.get("choices"))


def dataclass_from(cls, args: argparse.Namespace, config_file: dict, skip: Sequence[str] = ()):
    """``cls`` from the command line, then the config file, then the field defaults."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        cli_value = getattr(args, f.name, None)
        if cli_value is not None:
            values[f.name] = cli_value
        elif f.name in config_file:
            values[f.name] = config_file[f.name]
    try:
        return cls(**values)
    except PtuneError as error:
        source = config_file.get("__source__")
        raise PtuneError(f"{source}: {error}" if source else str(error)) from None


def read_config(path: str | None) -> dict:
    """A JSON config file whose keys are option names (``lr``, ``method``...); CLI flags win."""
    if not path:
        return {}
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PtuneError(f"--config {file}: config file not found; check the path") from None
    except IsADirectoryError:
        raise PtuneError(f"--config {file}: is a folder; give the JSON config file itself") from None
    except OSError as error:
        raise PtuneError(f"--config {file}: cannot read it ({error.strerror}); check its permissions") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise PtuneError(f"{file}: not valid JSON ({error}); fix the file") from None
    if not isinstance(data, dict):
        raise PtuneError(f"{file}: a config file must be a JSON object of option names to values")
    known = {f.name for cls in (MethodConfig, TrainConfig, DeviceConfig) for f in dataclasses.fields(cls)}
    known |= set(FILE_KEYS) | set(FEWSHOT_KEYS)
    unknown = sorted(set(data) - known)
    if unknown:
        raise PtuneError(f"{file}: unknown option(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(sorted(known))}")
    for key in FILE_KEYS[1:]:
        if key in data and not isinstance(data[key], str):
            raise PtuneError(f"{file}: option {key!r} must be a string (a path or name), got {data[key]!r}")
    task = data.get("task")
    if task is not None and not (isinstance(task, str) or (isinstance(task, list) and task
                                                          and all(isinstance(t, str) for t in task))):
        raise PtuneError(f"{file}: option 'task' must be a task name or a list of names, got {task!r}")
    return {**data, "__source__": str(file)}


def config_of(args: argparse.Namespace, config_file: dict, *, drop: Sequence[str] = ("out",)) -> dict:
    """The options of a ``ptune train`` command line (flags over its config file) as the content of a config
    file, paths made absolute, so that ``ptune train --config FILE`` repeats them from any folder."""
    keys = [f.name for cls in (MethodConfig, TrainConfig, DeviceConfig) for f in dataclasses.fields(cls)
            if f.name != "progress"]
    config = {key: value for key, value in config_file.items() if key != "__source__"}
    for key in (*keys, *FILE_KEYS, *FEWSHOT_KEYS):
        value = getattr(args, key, None)
        if value is not None:
            config[key] = value
    if isinstance(config.get("task"), list) and len(config["task"]) == 1:
        config["task"] = config["task"][0]
    for key in ("train", "dev", "test", "dataset", "backbone"):  # a backbone or dataset: a name, or a folder
        if isinstance(config.get(key), str) and Path(config[key]).exists():
            config[key] = str(Path(config[key]).resolve())
    return {key: value for key, value in config.items() if key not in drop}


# -- the prompt file a command names ---------------------------------------------------------------
def load_prompt_and_backbone(args: argparse.Namespace):
    """The model saved in ``args.prompt`` (a file, a folder or a hub repo id), on its recorded backbone or
    ``--backbone``."""
    from ptune.storage.locations import locate_prompt
    from ptune.storage.prompt_files import load_prompt, read_header

    prompt = locate_prompt(args.prompt)
    header = read_header(prompt)
    return load_prompt(prompt, backbone_for(prompt, header, args))


def backbone_for(prompt, header: dict, args: argparse.Namespace):
    """``--backbone``, else the backbone the prompt file ``prompt`` (its ``header``) was trained on."""
    from ptune.model.backbones import load_backbone
    from ptune.storage.prompt_files import recorded_backbone

    device = device_from(args)
    if args.backbone:
        return load_backbone(args.backbone, trust_remote_code=args.trust_remote_code, **device)
    return recorded_backbone(prompt, header, trust_remote_code=args.trust_remote_code, **device)
