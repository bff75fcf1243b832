"""``ptune serve``: an HTTP server where every prompt file in a folder is a task on one shared backbone."""

from __future__ import annotations

import argparse
from pathlib import Path

from ptune.cli.options import add_device_options, device_from
from ptune.cli.output import err
from ptune.bounds import COUNT, PORT, Bound
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
    serve.add_argument("--max-resident-mb", type=Bound(0, above=True), default=1024.0,
                       help="MiB for the prompts kept loaded and the index of every file (640 B each); the least "
                            "recently used are evicted and reloaded on their next request (default 1024, about 3,400 "
                            "deep prompts of 300 KB)")
    add_device_options(serve)
    serve.add_argument("--ray", action="store_true",
                       help="run on Ray Serve: replicas of the backbone, each request routed to a replica that holds "
                            "its task (needs pip install 'ptune[ray]')")
    serve.add_argument("--replicas", type=COUNT, default=2, help="with --ray: how many replicas (default 2)")
    serve.add_argument("--ray-address", help="with --ray: address of a running Ray cluster (default: start a local one)")
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ptune.serve.malloc import limit_malloc

    folder = Path(args.folder)
    if not folder.is_dir():
        raise PtuneError(f"{folder}: not a folder; give the folder that holds the prompt files (*.safetensors)")
    if args.ray:
        return run_ray(args, folder)
    limit_malloc()  # before the server's threads start: RSS then stays within the prompts' budget
    from ptune.serve.read_ahead import ReadAhead

    read_ahead = ReadAhead.start(folder)  # forked before torch loads: headers read on another core meanwhile

    import uvicorn

    from ptune.model.backbones import load_backbone
    from ptune.serve.app import create_app

    try:
        backbone = load_backbone(args.backbone or backbone_of(folder), trust_remote_code=args.trust_remote_code,
                                 **device_from(args))
    except PtuneError as error:
        if args.backbone:
            raise
        raise PtuneError(f"{error} (named by the prompt files in {folder}; choose one with --backbone)") from None
    app = create_app(folder, backbone, _limits(args), read_ahead)
    registry = app.state.registry
    err().log(f"serving {len(registry)} task(s) from {folder} on {backbone.name} at http://{args.host}:{args.port} "
              f"(docs at /docs; {len(registry.failed)} file(s) failed, see /tasks; up to "
              f"{args.max_resident_mb:g} MiB of prompts resident)", markup=False)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _limits(args: argparse.Namespace):
    from ptune.serve.app import Limits

    return Limits(max_body_bytes=args.max_body_bytes, max_texts=args.max_texts, max_text_chars=args.max_text_chars,
                  max_batch=args.max_batch, window_ms=args.window_ms, max_resident_mb=args.max_resident_mb)


def run_ray(args: argparse.Namespace, folder: Path) -> int:
    """``ptune serve --ray``: the Ray Serve deployment (``serve/ray_app.py``) until interrupted."""
    import signal
    import time

    try:
        import ray
        from ray import serve
    except ImportError:
        raise PtuneError("--ray needs Ray Serve, which is not installed; pip install 'ptune[ray]'") from None
    from ptune.serve.ray_app import build_app

    backbone = args.backbone or backbone_of(folder)
    signal.signal(signal.SIGTERM, _interrupted)  # stop as on Ctrl-C: shut Serve and the local cluster down
    ray.init(address=args.ray_address, include_dashboard=False)
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        load = device_from(args)
        serve.run(build_app(folder, backbone, replicas=args.replicas, limits=_limits(args),
                            trust_remote_code=args.trust_remote_code, load=load), name="ptune")
        err().log(f"serving the prompt files in {folder} on {backbone} with {args.replicas} Ray Serve replica(s) at "
                  f"http://{args.host}:{args.port} (device {load['device']}, dtype {load['dtype']}; /health lists "
                  "each replica's)", markup=False)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        serve.shutdown()
        ray.shutdown()


def _interrupted(*_) -> None:
    raise KeyboardInterrupt


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
