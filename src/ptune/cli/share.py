"""``ptune save-pretrained`` and ``ptune push``: a prompt as a shareable folder (the prompt file and a model
card) and that folder on the Hugging Face hub, from where ``ptune predict user/name`` loads it."""

from __future__ import annotations

import argparse

from ptune.cli.output import print_json
from ptune.errors import PtuneError


def add_parser(sub) -> None:
    save = sub.add_parser("save-pretrained", help="write a prompt as a folder to share: prompt.safetensors and a "
                                                  "README.md model card (metadata, method, results, command, usage)")
    save.add_argument("prompt", help="prompt file (.safetensors), its run folder (its results.json and command go "
                                     "into the card) or a hub repo id user/name")
    save.add_argument("folder", help="the folder to write (new, or one written before with --overwrite)")
    save.add_argument("--repo", metavar="USER/NAME",
                      help="the hub repo the card's usage examples load (default: the folder's path)")
    save.add_argument("--overwrite", action="store_true", help="replace a folder written before")
    save.set_defaults(func=run_save)

    push = sub.add_parser("push", help="upload a folder written by save-pretrained to a Hugging Face hub repo")
    push.add_argument("folder", help="a folder written by `ptune save-pretrained`")
    push.add_argument("--repo", required=True, metavar="USER/NAME", help="the hub model repo (created if need be)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.set_defaults(func=run_push)


def run_save(args: argparse.Namespace) -> int:
    from ptune.interop.hub import CARD, save_pretrained
    from ptune.storage.locations import PROMPT_FILE, REPO_ID

    if args.repo is not None and not REPO_ID.match(args.repo):
        raise PtuneError(f"--repo {args.repo!r}: not a hub repo id; give user/name")
    folder = save_pretrained(args.prompt, args.folder, repo_id=args.repo, overwrite=args.overwrite)
    print_json({"prompt": args.prompt, "folder": str(folder), "files": [PROMPT_FILE, CARD]})
    return 0


def run_push(args: argparse.Namespace) -> int:
    from ptune.interop.hub import check_shared, push
    from ptune.storage.locations import REPO_ID

    if not REPO_ID.match(args.repo):
        raise PtuneError(f"--repo {args.repo!r}: not a hub repo id; give user/name")
    check_shared(args.folder)  # before anything reaches for the network
    url = push(args.folder, args.repo, private=args.private)
    print_json({"folder": args.folder, "repo": args.repo, "private": args.private, "url": url})
    return 0
