"""`mde-ros download NAME`: a registry model's official files into the weights folder.

Only ever run on a user's request (never by the node or at import). Each file is fetched over
HTTP(S) into `<file>.part`, resumed with an HTTP Range request after an interruption, checked
(sha256 when the registry pins one, else size and file format) and only then renamed to its final
name, so a half-downloaded file is never mistaken for weights. stdlib urllib + tqdm: no torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ..errors import MdeRosError
from .registry import Entry, RemoteFile, get_entry

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT_S = 30.0
HUB = "https://huggingface.co"


class DownloadError(MdeRosError):
    """A download failed; the message says why and what to do."""


def download_model(
    name: str,
    weights_root: Path,
    confirm: Callable[[str], bool],
    mirror: str | None = None,
    say: Callable[[str], None] = print,
    progress: bool = True,
) -> list[Path]:
    """Fetch every file of registry entry `name` into `weights_root/name/`; returns their paths.

    `confirm(question)` is asked before a non-commercial (CC-BY-NC) download. `mirror` replaces the
    publishers' host (same paths), e.g. a company cache.
    """
    try:
        entry = get_entry(name)
    except KeyError as exc:
        raise DownloadError(str(exc.args[0])) from None
    if not entry.files:
        raise DownloadError(f"{name} has no published files to download ({_why_none(entry)})")
    say(f"{name}: licence {entry.licence}  ({entry.spec.weights_url or 'shipped'})")
    if entry.non_commercial and not confirm(
        f"{name} is released under {entry.licence}: non-commercial use only. Download it?"
    ):
        raise DownloadError(
            f"not downloaded: the {entry.licence} licence was not accepted (use --yes to accept)"
        )
    folder = weights_root / name
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for remote in entry.files:
        url = remote.url.replace(HUB, mirror.rstrip("/"), 1) if mirror else remote.url
        paths.append(fetch_file(remote, url, folder / remote.name, say=say, progress=progress))
    return paths


def _why_none(entry: Entry) -> str:
    if entry.spec.architecture == "llm_mde":
        return "LLM-MDE weights are not published yet"
    return "it is shipped with mde_ros"


def fetch_file(
    remote: RemoteFile, url: str, target: Path, say: Callable[[str], None] = print, progress: bool = True
) -> Path:
    """Download `url` to `target` (resuming `target.part`), verify it, rename; returns `target`."""
    if target.is_file():
        try:
            verify(remote, target)
            say(f"  {target.name}: already here and verified")
            return target
        except DownloadError as exc:
            log.warning("re-downloading %s: %s", target, exc)
            target.unlink()
    partial = target.with_name(target.name + ".part")
    _transfer(url, partial, progress)
    try:
        verify(remote, partial)
    except DownloadError:
        partial.unlink(missing_ok=True)  # a complete but wrong file: resuming cannot fix it
        raise
    os.replace(partial, target)
    say(f"  {target.name}: {target.stat().st_size} bytes, {_verified_how(remote)}")
    return target


def _verified_how(remote: RemoteFile) -> str:
    if remote.sha256:
        return "sha256 verified"
    return "size and format verified (no published sha256 reachable offline)"


def _transfer(url: str, partial: Path, progress: bool) -> None:
    have = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "mde-ros"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the part file is already complete
            return
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"cannot reach {url} ({reason}): this machine looks offline. Run `mde-ros download` on a "
            f"machine with internet and copy the weights folder, or fetch {url} by hand into {partial.parent}"
        ) from None
    with response:
        resumed = have and response.status == 206
        if have and not resumed:
            log.info("the server ignored the Range request: downloading %s from the start", url)
            have = 0
        length = response.headers.get("Content-Length")
        expected = have + int(length) if length is not None else None
        _copy(response, partial, resumed, have, expected, progress)
    got = partial.stat().st_size
    if expected is not None and got != expected:
        raise DownloadError(
            f"{url}: transfer ended at {got} of {expected} bytes; run the same command again to resume"
        )


def _copy(response, partial: Path, append: bool, have: int, total: int | None, progress: bool) -> None:
    from tqdm import tqdm

    with (
        open(partial, "ab" if append else "wb") as out,
        tqdm(
            total=total, initial=have, unit="B", unit_scale=True, desc=partial.name[:-5], disable=not progress
        ) as bar,
    ):
        while True:
            try:
                block = response.read(CHUNK)
            except (OSError, ValueError) as exc:  # connection reset mid-transfer: keep what arrived
                log.warning("transfer interrupted: %s", exc)
                break
            if not block:
                break
            out.write(block)
            bar.update(len(block))


def verify(remote: RemoteFile, path: Path) -> None:
    """sha256 when pinned, size when known, and the file format; DownloadError if any fails."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        raise DownloadError(f"{path.name}: {size} bytes, expected {remote.size}")
    if remote.sha256:
        digest = _sha256(path)
        if digest != remote.sha256:
            raise DownloadError(f"{path.name}: sha256 {digest} does not match the registry's {remote.sha256}")
    _check_format(path, remote.name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _check_format(path: Path, name: str) -> None:
    with open(path, "rb") as handle:
        head = handle.read(8)
        if name.endswith(".safetensors"):
            _check_safetensors(handle, head, path)
        elif name.endswith((".pth", ".pt", ".bin")):
            # torch.save writes a zip archive (PK\x03\x04); very old files are raw pickles (0x80).
            if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
                raise DownloadError(f"{path.name} is not a PyTorch checkpoint (starts with {head[:4]!r})")
        elif name.endswith(".json"):
            try:
                json.loads(head + handle.read())
            except ValueError as exc:
                raise DownloadError(f"{path.name} is not valid JSON: {exc}") from None


def _check_safetensors(handle, head: bytes, path: Path) -> None:
    if len(head) != 8:
        raise DownloadError(f"{path.name} is not a safetensors file (too short)")
    (length,) = struct.unpack("<Q", head)
    size = path.stat().st_size
    try:
        if length > size - 8:
            raise ValueError("header longer than the file")
        header = json.loads(handle.read(length))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DownloadError(f"{path.name} is not a safetensors file ({exc})") from None
    if 8 + length + max(ends, default=0) != size:
        raise DownloadError(f"{path.name}: safetensors header describes a different size (truncated?)")
