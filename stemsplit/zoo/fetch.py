"""Verified downloads into the model cache: resume, retries, mirror, offline, locks.

A file is streamed to `<cache>/<name>.part` (resumed with an HTTP Range request when
a previous attempt left one), checked (the card's full sha256, or the 8-hex prefix
Demucs publishes, or the sha256 recorded at the first download when nothing is
published), then renamed into place atomically. A lock file keeps two processes
from downloading the same file; the second one waits and finds it cached.

Environment: `STEMSPLIT_MODEL_DIR` (cache folder), `STEMSPLIT_OFFLINE=1` (never touch
the network), `STEMSPLIT_MIRROR=BASE_URL` (fetch every file as BASE_URL/<file name>),
`STEMSPLIT_TIMEOUT=SECONDS` (give up on a silent server after this long; default 10 s
to connect, 60 s between bytes).
`check_locations` asks every URL of a file for one byte (`stemsplit models check`).
The library stays quiet: progress goes to an optional callback the CLI renders.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stemsplit.atomic import write_text_atomic
from stemsplit.errors import ChecksumMismatch, DownloadError
from stemsplit.zoo.catalog import FileSpec, ModelCard

log = logging.getLogger(__name__)

MODEL_DIR_ENV = "STEMSPLIT_MODEL_DIR"
OFFLINE_ENV = "STEMSPLIT_OFFLINE"
MIRROR_ENV = "STEMSPLIT_MIRROR"
TIMEOUT_ENV = "STEMSPLIT_TIMEOUT"
HASHES_FILE = "hashes.json"
CHUNK_BYTES = 1 << 16  # small reads: a cut connection loses at most this much
DEFAULT_TIMEOUT = (10.0, 60.0)  # (connect, read) seconds
_FATAL_STATUS = {401, 403, 404, 410}


@dataclass(frozen=True)
class DownloadProgress:
    """A progress event: `done` of `total` bytes of `file` (total None if unknown)."""

    file: str
    done: int
    total: int | None
    url: str


ProgressCallback = Callable[[DownloadProgress], None]


class _Retryable(Exception):
    """A failure worth another attempt (5xx, cut connection, short body)."""


class _Fatal(Exception):
    """A failure no retry will fix (404, 403...): try the next URL."""


def cache_dir(model_dir: str | Path | None = None) -> Path:
    """The model cache: `model_dir`, else STEMSPLIT_MODEL_DIR, else the user cache."""
    if model_dir is None:
        model_dir = os.environ.get(MODEL_DIR_ENV) or None
    if model_dir is None:
        import platformdirs

        return Path(platformdirs.user_cache_dir("stemsplit")) / "models"
    return Path(model_dir).expanduser()


def is_offline(offline: bool | None = None) -> bool:
    """`offline` when given, else STEMSPLIT_OFFLINE set to a true value."""
    if offline is not None:
        return offline
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def network_timeout() -> tuple[float, float]:
    """(connect, read) seconds: `STEMSPLIT_TIMEOUT` for both when set, else the default."""
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    if not value:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        from stemsplit.errors import UsageError

        raise UsageError(f"{TIMEOUT_ENV}={value!r}: give a positive number of seconds")
    return (seconds, seconds)


def file_urls(spec: FileSpec) -> list[str]:
    """URLs to try in order: the mirror alone when STEMSPLIT_MIRROR is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        return [f"{mirror.rstrip('/')}/{spec.name}"]
    return [spec.url, *spec.mirrors]


def cached_path(spec: FileSpec, model_dir: str | Path | None = None) -> Path:
    """Where `spec` lives once downloaded (cached or not)."""
    return cache_dir(model_dir) / spec.name


def is_cached(spec: FileSpec, model_dir: str | Path | None = None) -> bool:
    """True when the file is in the cache (with the right size, when known)."""
    path = cached_path(spec, model_dir)
    return path.is_file() and (spec.size is None or path.stat().st_size == spec.size)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _lock(path: Path, poll_seconds: float = 0.2) -> Iterator[None]:
    """An exclusive inter-process lock on `path` (fcntl; O_EXCL lock file elsewhere)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                time.sleep(poll_seconds)
        try:
            yield
        finally:
            os.close(fd)
            path.unlink(missing_ok=True)
        return
    while True:  # the holder deletes the file: a waiter that locked a deleted one retries
        handle = open(path, "a+b")  # closed below
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            current = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        handle.close()
    try:
        yield
    finally:  # no `.lock` is left in the cache, whatever happened
        path.unlink(missing_ok=True)
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def recorded_hashes(model_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The sha256 recorded at first download, by file name."""
    path = cache_dir(model_dir) / HASHES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise DownloadError(f"cannot read {path} ({err}): delete it to record hashes anew") from err
    return data if isinstance(data, dict) else {}


def _record_hash(cache: Path, name: str, sha256: str, url: str, size: int) -> None:
    with _lock(cache / f".{HASHES_FILE}.lock"):
        data = recorded_hashes(cache)
        data[name] = {"sha256": sha256, "url": url, "size": size}
        write_text_atomic(cache / HASHES_FILE, json.dumps(data, indent=2, sort_keys=True))


def expected_hash(spec: FileSpec, recorded: dict[str, dict[str, Any]]) -> tuple[str | None, str]:
    """(expected sha256 or its prefix, where it comes from) for `spec`."""
    if spec.sha256:
        return spec.sha256, "model card"
    if spec.sha256_prefix:
        return spec.sha256_prefix, "published prefix"
    entry = recorded.get(spec.name)
    if entry and entry.get("sha256"):
        return str(entry["sha256"]), "recorded at first download"
    return None, "none"


def check_hash(spec: FileSpec, digest: str, recorded: dict[str, dict[str, Any]]) -> bool:
    """True when `digest` matches what is known of `spec` (or nothing is known)."""
    expected, _ = expected_hash(spec, recorded)
    return expected is None or digest.startswith(expected.lower())


def _stream(
    url: str, part: Path, spec: FileSpec, progress: ProgressCallback | None, timeout: Any
) -> None:
    """One attempt: GET (resuming `part` with Range), appending to `part`."""
    import requests

    have = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    with requests.get(url, stream=True, timeout=timeout, headers=headers) as response:
        status = response.status_code
        if status == 416 and have:
            part.unlink()
            raise _Retryable("the server refused to resume; starting over")
        if status in _FATAL_STATUS:
            raise _Fatal(f"HTTP {status}")
        if status >= 400:
            raise _Retryable(f"HTTP {status}")
        start = 0
        if status == 206:
            content_range = response.headers.get("Content-Range", "")
            start = int(content_range.split()[-1].split("-")[0]) if content_range else -1
            if start != have:
                part.unlink(missing_ok=True)
                raise _Retryable(f"unexpected Content-Range {content_range!r}; starting over")
        elif have:
            log.debug("%s: server ignored Range; downloading from the start", spec.name)
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else spec.size
        done = start
        with open(part, "ab" if start else "wb") as out:
            for block in response.iter_content(CHUNK_BYTES):
                out.write(block)
                done += len(block)
                if progress is not None:
                    progress(DownloadProgress(spec.name, done, total, url))
        if total is not None and done != total:
            raise _Retryable(f"connection closed after {done} of {total} bytes")


def _download(
    spec: FileSpec,
    part: Path,
    urls: list[str],
    progress: ProgressCallback | None,
    retries: int,
    timeout: Any,
    backoff: float,
    model_name: str = "",
) -> str:
    """Fetch into `part` from the first URL that works; the URL used."""
    import requests

    problems: list[str] = []
    for url in urls:
        for attempt in range(retries + 1):
            try:
                _stream(url, part, spec, progress, timeout)
                return url
            except _Fatal as err:
                problems.append(str(err))
                break
            except (_Retryable, requests.RequestException, OSError) as err:
                problems.append(_plain_reason(err))
                log.debug("download attempt %d of %s failed: %s", attempt + 1, spec.name, err)
                if attempt < retries:
                    time.sleep(backoff * 2**attempt)
    from urllib.parse import urlsplit

    what = f"{spec.name} (model {model_name})" if model_name else spec.name
    raise DownloadError(
        f"cannot download {what} from {urlsplit(urls[-1]).netloc} ({problems[-1]}); "
        f"check the network, set {MIRROR_ENV}=URL (a server with the file at "
        f"URL/{spec.name}), pass --checkpoint FILE, or save {spec.url} as "
        f"{part.parent / spec.name}"
    )


def _plain_reason(err: BaseException) -> str:
    """What went wrong, without urllib3's internals (those are logged with --debug)."""
    import requests

    if isinstance(err, requests.Timeout):
        return "timed out"
    if isinstance(err, requests.ConnectionError):
        text = str(err)
        if "NameResolution" in text or "Name or service not known" in text:
            return "the host name does not resolve"
        if "refused" in text.lower():
            return "connection refused"
        return "cannot connect"
    if isinstance(err, requests.RequestException):
        return type(err).__name__
    return str(err)


def ensure_file(
    spec: FileSpec,
    *,
    offline: bool | None = None,
    model_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    retries: int = 3,
    timeout: Any = None,
    backoff: float = 0.5,
    model_name: str = "",
) -> Path:
    """The cached path of `spec`, downloading and verifying it first if needed.

    `timeout` is requests' (connect, read) seconds; None: `STEMSPLIT_TIMEOUT` or the default.
    """
    cache = cache_dir(model_dir)
    dest = cache / spec.name
    if is_cached(spec, cache):
        return dest
    urls = file_urls(spec)
    if is_offline(offline):
        what = f"model {model_name!r} file" if model_name else "model file"
        raise DownloadError(
            f"{what} {spec.name} is not in the cache and offline mode is on: "
            f"download {urls[0]} by hand and save it as {dest}"
        )
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"cannot create the model cache {cache}: {err}") from err
    with _lock(cache / f".{spec.name}.lock"):
        if is_cached(spec, cache):  # another process finished it while we waited
            return dest
        part = cache / f"{spec.name}.part"
        url = _download(spec, part, urls, progress, retries, timeout or network_timeout(),
                        backoff, model_name)
        digest = sha256_of(part)
        size = part.stat().st_size
        recorded = recorded_hashes(cache)
        expected, origin = expected_hash(spec, recorded)
        if not check_hash(spec, digest, recorded) or (spec.size is not None and size != spec.size):
            part.unlink(missing_ok=True)
            advice = "retry later or fix the card"
            if url not in (spec.url, *spec.mirrors):  # the user's STEMSPLIT_MIRROR served it
                advice = (f"the copy on {MIRROR_ENV} is not the published file: replace it "
                          f"with {spec.url}, or unset {MIRROR_ENV}")
            raise ChecksumMismatch(
                f"{spec.name} from {url} is corrupt (sha256 {digest[:16]}..., {size} bytes; "
                f"expected {expected} from the {origin}); nothing was cached: {advice}"
            )
        os.replace(part, dest)
        if spec.sha256 is None and spec.name not in recorded:
            _record_hash(cache, spec.name, digest, url, size)
        log.debug("downloaded %s (sha256 %s)", dest, digest)
    return dest


def ensure_files(
    card: ModelCard,
    *,
    files: list[FileSpec] | None = None,
    offline: bool | None = None,
    model_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    **options: Any,
) -> list[Path]:
    """Cached paths of the card's files (or of `files`, a subset), fetched as needed."""
    specs = card.files if files is None else files
    return [
        ensure_file(
            spec,
            offline=offline,
            model_dir=model_dir,
            progress=progress,
            model_name=card.name,
            **options,
        )
        for spec in specs
    ]


@dataclass(frozen=True)
class VerifyResult:
    """The state of one cached file after re-hashing: ok, mismatch or missing."""

    model: str
    file: str
    path: Path
    status: str
    sha256: str | None = None


def verify_cached(
    cards: list[ModelCard], model_dir: str | Path | None = None
) -> list[VerifyResult]:
    """Re-hash every cached file of `cards` against its card or recorded hash."""
    recorded = recorded_hashes(model_dir)
    results = []
    for card in cards:
        for spec in card.files:
            path = cached_path(spec, model_dir)
            if not path.is_file():
                results.append(VerifyResult(card.name, spec.name, path, "missing"))
                continue
            digest = sha256_of(path)
            ok = check_hash(spec, digest, recorded)
            ok = ok and (spec.size is None or path.stat().st_size == spec.size)
            results.append(
                VerifyResult(card.name, spec.name, path, "ok" if ok else "mismatch", digest)
            )
    return results


@dataclass(frozen=True)
class LocationCheck:
    """What one URL of a file answered: `reachable`, `dead` or `size mismatch`;
    `detail` says why (HTTP status, network error, the sizes)."""

    url: str
    status: str
    detail: str
    size: int | None = None


@dataclass(frozen=True)
class FileCheck:
    """Every location of one file of a model, asked in download order."""

    model: str
    file: str
    locations: tuple[LocationCheck, ...]

    @property
    def reachable(self) -> bool:
        """True when at least one location serves the file (at the card's size)."""
        return any(location.status == "reachable" for location in self.locations)


def probe(url: str, size: int | None, timeout: Any = None) -> LocationCheck:
    """Ask `url` for its first byte (a Range GET: servers that sign GETs, such as
    GitHub's release storage, refuse HEAD) and compare the total size it reports
    with the card's `size`. Nothing is downloaded beyond that byte."""
    import requests

    headers = {"Range": "bytes=0-0", "Accept-Encoding": "identity"}
    try:
        with requests.get(url, stream=True, timeout=timeout or network_timeout(),
                          headers=headers) as response:  # fmt: skip
            status = response.status_code
            if status >= 400:
                return LocationCheck(url, "dead", f"HTTP {status}")
            total: int | None = None
            content_range = response.headers.get("Content-Range", "")
            if status == 206 and "/" in content_range:
                tail = content_range.rsplit("/", 1)[-1]
                total = int(tail) if tail.isdigit() else None
            elif status == 200 and response.headers.get("Content-Length", "").isdigit():
                total = int(response.headers["Content-Length"])
    except requests.RequestException as err:
        return LocationCheck(url, "dead", _plain_reason(err))
    if size is not None and total is not None and total != size:
        return LocationCheck(url, "size mismatch", f"{total} bytes, the card says {size}", total)
    detail = f"{total} bytes" if total is not None else "size not reported"
    return LocationCheck(url, "reachable", f"HTTP {status}, {detail}", total)


def check_locations(cards: list[ModelCard], timeout: Any = None) -> list[FileCheck]:
    """Probe every location of every file of `cards` (the URLs a download would try,
    so STEMSPLIT_MIRROR alone when it is set), eight at a time: a dead host costs its
    timeout once per location, not once per card in turn."""
    from concurrent.futures import ThreadPoolExecutor

    files = [(card.name, spec) for card in cards for spec in card.files]
    asks = [(url, spec.size) for _, spec in files for url in file_urls(spec)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = iter(pool.map(lambda ask: probe(ask[0], ask[1], timeout), asks))
    return [FileCheck(name, spec.name, tuple(next(answers) for _ in file_urls(spec)))
            for name, spec in files]  # fmt: skip


def remove_cached(card: ModelCard, model_dir: str | Path | None = None) -> list[Path]:
    """Delete the card's cached files (and partial downloads); the paths removed."""
    removed = []
    for spec in card.files:
        path = cached_path(spec, model_dir)
        for candidate in (path, path.with_name(path.name + ".part")):
            if candidate.is_file():
                candidate.unlink()
                removed.append(candidate)
    return removed
