"""``ptune export`` and ``ptune import-peft``: prompt files to and from Hugging Face PEFT adapter folders;
``ptune export --embeds``: an input prompt as vLLM's prompt embeddings."""

from __future__ import annotations

import argparse
from pathlib import Path

from ptune.cli.options import add_backbone_override, backbone_for, device_from
from ptune.cli.output import print_json
from ptune.errors import PtuneError


def add_parser(sub) -> None:
    export = sub.add_parser("export", help="write a prompt file as a Hugging Face PEFT adapter folder, or as "
                                           "prompt embeddings for vLLM (--embeds)")
    export.add_argument("prompt", help="prompt file (.safetensors); for --peft trained with --peft-layout")
    target = export.add_mutually_exclusive_group(required=True)
    target.add_argument("--peft", metavar="DIR", help="adapter folder to write")
    target.add_argument("--embeds", metavar="DIR", help="folder to write an input prompt (prompt / ptuning) to, as "
                        "vectors and a template description that build vLLM's prompt_embeds (docs/EMBEDS.md)")
    add_backbone_override(export)
    export.set_defaults(func=run_export)

    imp = sub.add_parser("import-peft", help="read a PEFT prompt/P-tuning/prefix adapter folder as a prompt file")
    imp.add_argument("adapter", help="folder written by PEFT's save_pretrained (adapter_model.safetensors)")
    imp.add_argument("--out", required=True, help="prompt file to write (.safetensors)")
    imp.add_argument("--backbone", default="minilm", help="the adapter's base model")
    imp.add_argument("--labels", help="the task's labels, comma separated (needed unless the folder has ptune's head)")
    imp.add_argument("--tagging", action="store_true", help="a per-token task (the labels are tags)")
    imp.add_argument("--task", help="task name to record (default: the folder name)")
    imp.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    imp.set_defaults(func=run_import)


def run_export(args: argparse.Namespace) -> int:
    from ptune.interop.peft import export_peft
    from ptune.storage.prompt_files import read_header

    header = read_header(args.prompt)
    if args.embeds is not None:
        return _export_embeds(args, header)
    if Path(args.peft).exists() and not Path(args.peft).is_dir():
        raise PtuneError(f"--peft {args.peft}: is a file; give a folder for the adapter's files")
    folder = export_peft(args.prompt, args.peft, backbone_for(args.prompt, header, args))
    print_json({"prompt": args.prompt, "peft_adapter": str(folder),
                "files": sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))})
    return 0


def _export_embeds(args: argparse.Namespace, header: dict) -> int:
    from ptune.interop.embeds import export_embeds, refusal

    if Path(args.embeds).exists() and not Path(args.embeds).is_dir():
        raise PtuneError(f"--embeds {args.embeds}: is a file; give a folder for the exported files")
    if (why := refusal(args.prompt, header["method"])) is not None:  # before the backbone loads
        raise PtuneError(why)
    folder = export_embeds(args.prompt, args.embeds, backbone_for(args.prompt, header, args))
    print_json({"prompt": args.prompt, "embeds": str(folder),
                "files": sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))})
    return 0


def run_import(args: argparse.Namespace) -> int:
    from ptune.interop.peft import import_peft, read_adapter
    from ptune.model.backbones import load_backbone

    labels = [label.strip() for label in args.labels.split(",") if label.strip()] if args.labels else None
    if args.labels is not None and not labels:
        raise PtuneError(f"--labels {args.labels!r} names no label; give them comma separated, e.g. negative,positive")
    target = Path(args.out)
    if target.suffix != ".safetensors":
        raise PtuneError(f"--out {target}: a prompt file is a .safetensors file; give a name ending in .safetensors")
    if target.exists() and not args.overwrite:
        raise PtuneError(f"--out {target}: exists; choose another --out or pass --overwrite")
    if target.is_dir():
        raise PtuneError(f"--out {target}: is a folder; give a prompt file name (.safetensors)")
    read_adapter(args.adapter)  # a missing or foreign folder is refused before the backbone loads
    backbone = load_backbone(args.backbone, trust_remote_code=args.trust_remote_code, **device_from(args))
    model = import_peft(args.adapter, backbone, out=target, labels=labels, tagging=args.tagging, task_name=args.task)
    print_json({"adapter": args.adapter, "prompt": str(target), "method": model.config.method,
                "length": model.config.length, "labels": model.labels})
    return 0
