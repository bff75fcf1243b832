"""Where a prompt named on the command line or in ``load_prompt`` is: a prompt file, a folder that holds
``prompt.safetensors`` (a run folder, or one written by ``ptune save-pretrained``), or a hub repo id
(``user/name``) fetched through huggingface_hub's cache."""

from __future__ import annotations

import re
from pathlib import Path

from ptune.errors import PtuneError

PROMPT_FILE = "prompt.safetensors"  # the prompt file of a run folder and of a shared folder
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
SHARED_FILES = [PROMPT_FILE, "README.md"]  # what a shared prompt's repo holds: the prompt and its model card


def is_repo_id(text: str) -> bool:
    """``user/name`` as the hub spells a repo, not a path that exists here nor a file name."""
    return bool(REPO_ID.match(text)) and not text.endswith(".safetensors") and not Path(text).exists()


def locate_prompt(ref: str | Path) -> Path:
    """The prompt file ``ref`` names: itself (a file, or a path that does not exist: the reader says so), the
    ``prompt.safetensors`` of a folder, or that of hub repo ``user/name`` (downloaded once, then from the
    cache; offline, only the cache)."""
    path = Path(ref)
    if path.is_dir():
        if (path / PROMPT_FILE).is_file():
            return path / PROMPT_FILE
        raise PtuneError(f"{path}: a folder without {PROMPT_FILE}, so no prompt file to read; give the .safetensors "
                         "file itself, a run folder or a folder written by `ptune save-pretrained`")
    if isinstance(ref, str) and is_repo_id(ref):
        folder = download(ref)
        if not (folder / PROMPT_FILE).is_file():
            raise PtuneError(f"{ref}: the hub repo holds no {PROMPT_FILE}; is it a ptune prompt (shared with "
                             "`ptune save-pretrained` and `ptune push`)?")
        return folder / PROMPT_FILE
    return path


def download(repo_id: str) -> Path:
    """The local folder of hub repo ``repo_id``'s prompt files (``snapshot_download``: the cache when it has
    them; ``HF_HUB_OFFLINE=1``: only the cache)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HFValidationError, HfHubHTTPError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    hint = "not a local file or folder either; check the path"
    try:
        return Path(snapshot_download(repo_id, allow_patterns=SHARED_FILES))
    except LocalEntryNotFoundError:
        raise PtuneError(f"{repo_id}: not in the local hub cache and the hub cannot be reached (offline, "
                         f"HF_HUB_OFFLINE=1?) — download it once online, or give a local folder ({hint})") from None
    except GatedRepoError:
        raise PtuneError(f"{repo_id}: a gated hub repo; accept its terms on the hub and log in (`hf auth login`)") \
            from None
    except RepositoryNotFoundError:
        raise PtuneError(f"{repo_id}: no such model repo on the hub, or a private one: log in with `hf auth login` "
                         f"({hint})") from None
    except RevisionNotFoundError as error:
        raise PtuneError(f"{repo_id}: {error}; check the repo on the hub") from None
    except HFValidationError as error:
        raise PtuneError(f"{repo_id}: not a hub repo id ({error}); {hint}") from None
    except (HfHubHTTPError, OSError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PtuneError(f"{repo_id}: could not download it from the hub ({first}); try again, or give a local "
                         "folder") from None
