"""``hf://ORG/NAME[@REVISION]``: a ``cafe package`` folder on the Hugging Face Hub, read through huggingface_hub.

The local Hugging Face cache is tried first, so a package downloaded once loads offline
(``HF_HUB_OFFLINE=1`` included).  Only when it is not there is the Hub asked, with a short timeout;
a Hub that cannot be reached stops at once with one line saying what to supply, never a retry loop.
Uploading needs no code of cafe's: ``huggingface-cli upload ORG/NAME FOLDER``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CafeError
from ..extract.hub import first_line, hub_offline

HF_PREFIX = "hf://"
HUB_TIMEOUT_S = 5.0  # per request to the Hub: a dead network fails in seconds, not after minutes of retries


def parse_hf(source: str) -> tuple[str, str | None]:
    """``hf://ORG/NAME@REVISION`` -> (``ORG/NAME``, ``REVISION`` or None for the default branch)."""
    repo, _, revision = source.removeprefix(HF_PREFIX).partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or (_ and not revision):
        raise CafeError(f"{source}: a Hub package is named hf://ORG/NAME or hf://ORG/NAME@REVISION "
                        "(a branch, tag or commit).")
    return repo, revision or None


def resolve_hf(source: str) -> Path:
    """The local folder of the package ``source`` names: from the HF cache, else downloaded into it."""
    from huggingface_hub import constants, snapshot_download

    repo, revision = parse_hf(source)
    try:
        return Path(snapshot_download(repo, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - LocalEntryNotFoundError and kin: not cached, ask the Hub below
        pass
    where = f"not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    fetch = (f"download it once with internet (`huggingface-cli download {repo}`"
             + (f" --revision {revision}" if revision else "") + "), or pass the package folder itself")
    if hub_offline():
        raise CafeError(f"{source}: {where} and HF_HUB_OFFLINE is set, so nothing is downloaded; {fetch}.")
    return _download(source, repo, revision, f"{where} and the Hub cannot be reached", fetch)


def _download(source: str, repo: str, revision: str | None, where: str, fetch: str) -> Path:
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        HfApi().repo_info(repo, revision=revision, timeout=HUB_TIMEOUT_S)  # fails fast when offline
        return Path(snapshot_download(repo, revision=revision, etag_timeout=HUB_TIMEOUT_S))
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        kind = "revision" if isinstance(e, RevisionNotFoundError) else "repository"
        raise CafeError(f"{source}: the Hub has no such {kind} ({first_line(e)}); check the name, or log in "
                        "(`huggingface-cli login`) for a private one.") from None
    except Exception as e:  # noqa: BLE001 - connection, timeout and HTTP errors of httpx/requests/huggingface_hub
        raise CafeError(f"{source}: {where} ({first_line(e)}); {fetch}.") from None

