"""``ptune serve``: an HTTP server where every prompt file in a folder is a task on one shared backbone."""

from __future__ import annotations

import argparse
from pathlib import Path

from ptune.cli.output import err
from ptune.config import COUNT, PORT, Bound
from ptune.errors import PtuneError


def add_parser(sub) -> None:
    serve = sub.add_parser("serve", help="HTTP server: every prompt file in a folder is a task, one backbone")
    serve.add_argument("folder", help="folder of prompt files; each file's stem is a task name")
    serve.add_argument("--backbone", help="backbone (default: the one the first readable prompt file names)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, loopback only)")
    serve.add_argument("--port", type=PORT, default=8000, help="port to listen on, 1 to 65535")
    serve.add_argument("--max-batch", type=COUNT, default=64, help="most texts in one forward pass")
    serve.add_argument("--window-ms", type=Bound(0), default=5.0, help="how long to gather requests into a batch")
    serve.add_argument("--max-body-bytes", type=COUNT, default=1_000_000, help="largest request body accepted")
    serve.add_argument("--max-texts", type=COUNT, default=256, help="most texts in one request")
    serve.add_argument("--max-text-chars", type=COUNT, default=4000, help="longest text accepted")
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ptune.model.backbones import load_backbone
    from ptune.serve.app import Limits, create_app

    folder = Path(args.folder)
    if not folder.is_dir():
        raise PtuneError(f"{folder}: not a folder; give the folder that holds the prompt files (*.safetensors)")
    try:
        backbone = load_backbone(args.backbone or backbone_of(folder), trust_remote_code=args.trust_remote_code)
    except PtuneError as error:
        if args.backbone:
            raise
        raise PtuneError(f"{error} (named by the prompt files in {folder}; choose one with --backbone)") from None
    limits = Limits(max_body_bytes=args.max_body_bytes, max_texts=args.max_texts, max_text_chars=args.max_text_chars,
                    max_batch=args.max_batch, window_ms=args.window_ms)
    app = create_app(folder, backbone, limits)
    err().log(f"serving {len(app.state.registry.models)} task(s) from {folder} on {backbone.name} at "
              f"http://{args.host}:{args.port} (docs at /docs)", markup=False)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def backbone_of(folder: Path) -> str:
    """The backbone the first prompt file whose header reads names (minilm if none does): a corrupt file
    is left for the server to list as failed, never a reason to stop."""
    from ptune.storage.prompt_files import read_header

    for path in sorted(folder.glob("*.safetensors")):
        try:
            return read_header(path)["backbone"]["name"]
        except PtuneError:
            continue
    return "minilm"
