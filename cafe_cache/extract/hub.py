"""Hugging Face hub weights that fail fast: the local cache first, the network only when it answers.

Left to itself, a hub download without a network retries for about a minute, logs every retry twice
and ends in a message cut mid-word. Here a weights file is looked up in the local HF cache first (no
network at all when it is there); when it is not, an offline hub (``HF_HUB_OFFLINE=1``) or one that
does not answer within :data:`PROBE_SECONDS` stops at once with one line saying what to supply.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import CafeError

PROBE_SECONDS = 3.0  # how long the hub may take to answer before it counts as unreachable


def cached_file(repo_id: str, filenames: Sequence[str]) -> Path | None:
    """The first of ``filenames`` of ``repo_id`` in the local HF cache, or None (never touches the network)."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        found = try_to_load_from_cache(repo_id, name)
        if isinstance(found, str):
            return Path(found)
    return None


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it (also when set after it was imported)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")
    return bool(constants.HF_HUB_OFFLINE) or env


def reachable(url: str, timeout: float = PROBE_SECONDS) -> bool:
    """Whether the server of ``url`` answers at all within ``timeout`` s (any HTTP status counts; proxies from
    the environment are used, as the download would)."""
    parts = urlsplit(url)
    try:
        urllib.request.urlopen(urllib.request.Request(f"{parts.scheme}://{parts.netloc}/", method="HEAD"),
                               timeout=timeout).close()
        return True
    except urllib.error.HTTPError:
        return True  # it answered, with an error status
    except (OSError, ValueError):  # DNS failure, refused, timed out, bad URL
        return False


@contextmanager
def quiet_hub() -> Iterator[None]:
    """Silence huggingface_hub's retry warnings (each printed twice) and the root logger's ERROR lines that
    open_clip and timm add: cafe says what went wrong itself, in one line."""
    hub = logging.getLogger("huggingface_hub")
    level = hub.level
    hub.setLevel(logging.CRITICAL)
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
        hub.setLevel(level)


@contextmanager
def forced_offline() -> Iterator[None]:
    """The hub offline for the duration (the files are in the cache; no request is made)."""
    from huggingface_hub import constants

    was = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = was


def hub_file(repo_id: str, filenames: Sequence[str], what: str, how: str) -> Path:
    """The local path of the first of ``filenames`` in ``repo_id``: from the cache, else downloaded.

    ``what`` names the weights and ``how`` says how else to supply them; both go into the one-line
    error raised at once when the file is not cached and the hub is offline or unreachable."""
    from huggingface_hub import constants, hf_hub_download

    found = cached_file(repo_id, filenames)
    if found:
        return found
    where = f"not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if hub_offline():
        raise CafeError(f"{what} are {where} and HF_HUB_OFFLINE is set. {how}")
    if not reachable(constants.ENDPOINT):
        raise CafeError(f"{what} are {where} and {constants.ENDPOINT} cannot be reached. {how}")
    last = None
    with quiet_hub():
        for name in filenames:
            try:
                return Path(hf_hub_download(repo_id, name))
            except Exception as e:  # EntryNotFound for a missing alternative, HTTP and OS errors
                last = e
    raise CafeError(f"{what} could not be downloaded from {constants.ENDPOINT}/{repo_id} ({first_line(last)}). {how}")


def url_reachable_or_fail(url: str, what: str, how: str) -> None:
    """Stop at once when a plain-URL download (no hub entry) cannot reach its server."""
    if not reachable(url):
        raise CafeError(f"{what} must be downloaded from {urlsplit(url).netloc}, which cannot be reached. {how}")


def first_line(e: BaseException | None) -> str:
    """``TypeName: first line of the message``, whole (never cut mid-word)."""
    if e is None:
        return "no file found"
    text = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
