"""Fetch the real Oxford-IIIT Pet dataset: `python -m labkit download`.

The two archives (about 800 MB) come from the dataset's official site, with the URLs and MD5
checksums torchvision keeps in `OxfordIIITPet._RESOURCES`. Each archive streams into
`<archive>.part` and only takes its final name once its checksum matches, so an interrupted
download never looks complete; the next run resumes the `.part` file with an HTTP Range request.
"""

import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from torchvision.datasets import OxfordIIITPet
from torchvision.datasets.utils import calculate_md5, check_integrity, extract_archive
from tqdm.auto import tqdm

from labkit import paths

RESOURCES: tuple[tuple[str, str], ...] = tuple(OxfordIIITPet._RESOURCES)  # (url, md5) pairs
BASE_URL_VARIABLE = "LABKIT_DATASET_URL"
CHUNK_BYTES = 1 << 20
RETRY_DELAY_SECONDS = 1.0  # doubles after every failed attempt


class DownloadError(RuntimeError):
    """The dataset could not be fetched or verified; the message says what to do."""


class RetryableError(Exception):
    """A failure worth another attempt: a dropped connection, a timeout, a 5xx answer."""


def default_root() -> Path:
    return paths.data_dir() / "oxford-iiit-pet"


def download(
    root: str | Path | None = None,
    base_url: str | None = None,
    resources: Sequence[tuple[str, str]] | None = None,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 30.0,
) -> Path:
    """Download, verify and extract the dataset archives into `root`; returns `root`.

    Archives already downloaded and extracted are skipped, so running it twice is cheap.

    Args:
        root: target folder; `data/oxford-iiit-pet` in the project by default.
        base_url: a folder URL that replaces the official one (a mirror, or a test server);
            `$LABKIT_DATASET_URL` when not given.
        resources: (url, md5) pairs; torchvision's list for Oxford-IIIT Pet by default.
        progress: show a progress bar per archive.
        retries: attempts per archive before giving up on transient network errors.
        timeout: seconds to wait for the server on each connection or read.
    """
    if retries < 1:
        raise ValueError(f"download needs retries >= 1, got {retries}")
    root = Path(root) if root is not None else default_root()
    root.mkdir(parents=True, exist_ok=True)
    base_url = base_url or os.environ.get(BASE_URL_VARIABLE)
    for url, md5 in resources if resources is not None else RESOURCES:
        if base_url:
            url = f"{base_url.rstrip('/')}/{url.rsplit('/', 1)[-1]}"
        archive = root / url.rsplit("/", 1)[-1]
        marker = root / f".{archive.name}.extracted"
        if marker.is_file() and marker.read_text().strip() == md5:
            continue
        if not check_integrity(archive, md5):
            fetch_archive(url, md5, archive, progress, retries, timeout)
        extract_archive(archive, root)
        marker.write_text(md5 + "\n")  # written last: an interrupted extraction is redone
    return root


def fetch_archive(url: str, md5: str, archive: Path, progress: bool, retries: int, timeout: float) -> None:
    """Stream `url` into `<archive>.part`, retrying and resuming, then verify and rename it."""
    part = archive.with_name(archive.name + ".part")
    for attempt in range(1, retries + 1):
        try:
            stream_to_file(url, part, progress, timeout)
            break
        except RetryableError as error:
            if attempt == retries:
                raise DownloadError(
                    f"Could not download {url} ({error}); check your connection or download "
                    f"the archives by hand into {archive.parent}"
                ) from None
            time.sleep(RETRY_DELAY_SECONDS * 2 ** (attempt - 1))
    actual = calculate_md5(part)
    if actual != md5:
        part.unlink()
        raise DownloadError(
            f"Checksum mismatch for {url}: expected MD5 {md5}, got {actual}; the corrupt "
            f"download was deleted, run `python -m labkit download` again"
        )
    os.replace(part, archive)


def stream_to_file(url: str, part: Path, progress: bool, timeout: float) -> None:
    """Append the rest of `url` to `part` (a Range request), or write it whole if the server
    ignores ranges. Raises RetryableError for transient failures, DownloadError otherwise."""
    start = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "labkit"} | ({"Range": f"bytes={start}-"} if start else {})
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416:  # nothing left to send: the .part is complete, the checksum decides
            return
        if error.code >= 500 or error.code == 429:
            raise RetryableError(f"HTTP {error.code} {error.reason}") from None
        raise DownloadError(
            f"Could not download {url} (HTTP {error.code} {error.reason}); check the URL or "
            f"download the archives by hand into {part.parent}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        raise RetryableError(getattr(error, "reason", error)) from None
    with response:
        resumed = start > 0 and response.status == 206
        start = start if resumed else 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length else None
        with open(part, "ab" if resumed else "wb") as file, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not progress,
        ) as bar:
            try:
                while chunk := response.read(CHUNK_BYTES):
                    file.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as error:
                raise RetryableError(f"connection lost: {error}") from None
    if total is not None and part.stat().st_size < total:
        raise RetryableError(f"connection closed after {part.stat().st_size} of {total} bytes")
