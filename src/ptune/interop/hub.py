"""Sharing a prompt as adapters are shared: ``save_pretrained`` writes a folder with the prompt file and its
model card (``interop.cards``), atomically; ``push`` uploads such a folder to a Hugging Face hub repo."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from ptune.errors import PtuneError
from ptune.interop.cards import model_card, run_record
from ptune.storage.locations import PROMPT_FILE, SHARED_FILES, locate_prompt
from ptune.storage.prompt_files import read_header
from ptune.training.seeds import is_multi_seed

log = logging.getLogger(__name__)

CARD = "README.md"


def save_pretrained(prompt: str | Path, folder: str | Path, *, repo_id: str | None = None,
                    overwrite: bool = False) -> Path:
    """Write ``folder`` with ``prompt.safetensors`` (a copy of ``prompt``: a prompt file, a run folder or a hub
    repo id) and ``README.md``, its model card; ``repo_id`` is what the card's usage loads (default: the
    folder). The folder appears whole or not at all; an existing one is replaced only with ``overwrite`` and
    only when it holds nothing but those two files."""
    if is_multi_seed(prompt):
        raise PtuneError(f"{prompt}: a multi-seed folder holds a prompt per seed; give one, e.g. "
                         f"{Path(prompt) / 'seed-N'} (its card shows every seed's scores)")
    source = locate_prompt(prompt)
    header = read_header(source)
    target = Path(folder)
    _check_target(target, overwrite)
    card = model_card(header, run_record(source, header), ref=repo_id or str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        shutil.copyfile(source, staging / PROMPT_FILE)
        (staging / CARD).write_text(card, encoding="utf-8")
        for path in (staging / PROMPT_FILE, staging / CARD):
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's folder is private; a shared folder is not
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_target(target: Path, overwrite: bool) -> None:
    """Refuse a file, a folder of other files, or a shared folder without ``overwrite``."""
    if target.exists() and not target.is_dir():
        raise PtuneError(f"{target}: is a file; give a folder to write the prompt and its model card into")
    held = sorted(path.name for path in target.iterdir()) if target.is_dir() else []
    if not held:
        return
    others = [name for name in held if name not in (PROMPT_FILE, CARD)]
    if others:
        raise PtuneError(f"{target}: holds other files ({', '.join(others[:3])}); choose a new or empty folder")
    if not overwrite:
        raise PtuneError(f"{target}: holds a shared prompt already; pass --overwrite to replace it, or choose "
                         "another folder")


def _swap_in(staging: Path, target: Path) -> None:
    """Put the finished ``staging`` folder in ``target``'s place with renames (the old one, if any, goes last)."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.replace(target, old / target.name)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def check_shared(folder: str | Path) -> dict:
    """The header of the prompt in ``folder``, a folder written by ``save_pretrained`` (refused otherwise)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PtuneError(f"{folder}: no such folder; write one with `ptune save-pretrained PROMPT {folder}`")
    missing = [name for name in (PROMPT_FILE, CARD) if not (folder / name).is_file()]
    if missing:
        raise PtuneError(f"{folder}: lacks {' and '.join(missing)}; write the folder with "
                         f"`ptune save-pretrained PROMPT {folder}`")
    return read_header(folder / PROMPT_FILE)


def push(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload ``folder`` (``save_pretrained``'s) to the hub model repo ``repo_id``, created if need be (private
    with ``private``); returns the commit's URL. Only the shared files go up."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError, OfflineModeIsEnabled

    header = check_shared(folder)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        message = f"ptune: {header['task']['name']} {header['method']['method']} prompt"
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                                   allow_patterns=SHARED_FILES, commit_message=message)
    except OfflineModeIsEnabled:
        raise PtuneError(f"{repo_id}: the hub is switched off (HF_HUB_OFFLINE=1); unset it to push") from None
    except HFValidationError as error:
        raise PtuneError(f"--repo {repo_id}: not a hub repo id ({error}); give user/name") from None
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        fix = ("log in with `hf auth login` or set HF_TOKEN, with write access to the repo" if status in (401, 403)
               else "check the repo id and your connection, and try again")
        raise PtuneError(f"{repo_id}: the hub refused the upload ({str(error).splitlines()[0]}); {fix}") from None
    except OSError as error:
        raise PtuneError(f"{repo_id}: could not reach the hub ({error}); check your connection and try again") \
            from None
    url = getattr(commit, "commit_url", None) or f"https://huggingface.co/{repo_id}"
    log.info("pushed %s to %s", folder, url)
    return url
