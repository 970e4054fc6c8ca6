"""Robust HTTP(S) downloads: resume, retry with backoff, verification and atomic placement.

`download(url, dest)` guarantees that a file at `dest` is complete and verified:

* bytes stream into `<dest>.part` beside `dest`; only a verified `.part` is moved onto `dest` with
  `os.replace`, so an interrupted run never leaves a file that looks finished;
* an interrupted `.part` is resumed with an HTTP `Range` request; a server that ignores `Range`
  (answers 200) or answers with the wrong range makes the download restart cleanly from byte 0;
* 429, 408 and 5xx answers and dropped connections are retried with exponential backoff, honouring
  `Retry-After`; 401, 403, 404 and 410 fail at once with a message that says what to do;
* size and checksum (sha256 and/or md5) are checked when known; a bad `.part` is deleted;
* after every successful verification a sidecar `<dest>.sha256` (sha256sum format) is written, so
  a later run skips the download without any request when `dest` still matches its checksum (the
  given one, or the sidecar's when none is given);
* credentials never appear in log records or exception text: Authorization-like header values,
  basic-auth passwords, bearer tokens, URL passwords and secret-looking query values are redacted.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
import urllib3
from requests.auth import AuthBase
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

REDACTED = "***"
RETRYABLE_STATUS = frozenset({408, 425, 429})
CHUNK_SIZE = 1 << 20
Timeout = float | tuple[float, float]

_SENSITIVE_NAME = re.compile(
    r"auth|token|key|secret|passw|cookie|sig|credential|session", re.IGNORECASE
)
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", re.IGNORECASE)
_HEX = re.compile(r"^[0-9a-f]+$")
_QUERY_PAIR = re.compile(r"([?&])([^=&\s'\"#]+)=([^&\s'\"#]*)")


class DownloadError(RuntimeError):
    """A download that cannot complete; the message names the (redacted) URL and the remedy."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class HTTPStatusError(DownloadError):
    """The server answered with a status that retrying cannot fix (401, 403, 404, 410, ...)."""

    def __init__(self, message: str, *, url: str, status: int) -> None:
        super().__init__(message, url=url)
        self.status = status


class IntegrityError(DownloadError):
    """The downloaded bytes do not match the expected size or checksum."""


class RetriesExhaustedError(DownloadError):
    """Transient failures (429, 5xx, dropped connections) outlasted the retry budget."""


# --------------------------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """`url` without a userinfo password and without the values of secret-looking query keys."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, REDACTED if _SENSITIVE_NAME.search(k) else v) for k, v in pairs], safe="*"
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_of(headers: Mapping[str, str] | None, auth: object | None = None) -> list[str]:
    """Secret strings carried by `headers` (sensitive header values) and `auth` (password/token).

    Used to scrub any text before it reaches a log record or an exception message.
    """
    found: list[str] = []
    for name, value in (headers or {}).items():
        if not _SENSITIVE_NAME.search(name) or not value:
            continue
        found.append(str(value))
        scheme, _, credential = str(value).partition(" ")
        if credential and scheme.lower() in {"bearer", "basic", "token"}:
            found.append(credential.strip())
    for attribute in ("token", "password", "key"):
        secret: object = getattr(auth, attribute, None)
        if isinstance(secret, bytes):
            secret = secret.decode(errors="replace")
        if isinstance(secret, str) and secret:
            found.append(secret)
    # Longest first, so that a value containing another is replaced whole.
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def _redact_query_pair(match: re.Match[str]) -> str:
    lead, name = match.group(1), match.group(2)
    return f"{lead}{name}={REDACTED}" if _SENSITIVE_NAME.search(name) else match.group(0)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every secret replaced, URLs passed through `redact_url`, and secret-looking
    query values (also in bare `/path?query` request lines) hidden."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    text = re.sub(r"https?://[^\s'\"<>]+", lambda m: redact_url(m.group(0)), text)
    return _QUERY_PAIR.sub(_redact_query_pair, text)


class _RedactingFilter(logging.Filter):
    """Scrubs one download's secrets from third-party log records (urllib3 logs request lines,
    query string included, at DEBUG level)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTERED_LOGGERS = ("urllib3.connectionpool", "urllib3.response", "urllib3.util.retry")


# --------------------------------------------------------------------------------------------
# Checksums and sidecars
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Digests:
    size: int
    sha256: str
    md5: str | None


def hash_file(path: Path, *, md5: bool = False, chunk_size: int = CHUNK_SIZE) -> Digests:
    """Size, sha256 and (optionally) md5 of `path` in one read pass."""
    h256 = hashlib.sha256()
    h5 = hashlib.md5(usedforsecurity=False) if md5 else None
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(chunk_size):
            size += len(block)
            h256.update(block)
            if h5 is not None:
                h5.update(block)
    return Digests(size=size, sha256=h256.hexdigest(), md5=h5.hexdigest() if h5 else None)


def part_path(dest: Path) -> Path:
    """Where `download` streams the bytes for `dest` before they are verified."""
    return dest.with_name(dest.name + ".part")


def sidecar_path(dest: Path) -> Path:
    """The `<dest>.sha256` sidecar (sha256sum format) written after a successful verification."""
    return dest.with_name(dest.name + ".sha256")


def read_sidecar(dest: Path) -> str | None:
    """The sha256 recorded in `dest`'s sidecar, or None if there is no valid sidecar."""
    try:
        text = sidecar_path(dest).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    digest = text.split()[0].lower() if text else ""
    return digest if len(digest) == 64 and _HEX.match(digest) else None


def _write_sidecar(dest: Path, sha256: str) -> None:
    side = sidecar_path(dest)
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(f"{sha256}  {dest.name}\n", encoding="ascii")
    os.replace(tmp, side)


def _normalise_digest(value: str | None, name: str, length: int) -> str | None:
    if value is None:
        return None
    digest = value.strip().lower()
    if len(digest) != length or not _HEX.match(digest):
        raise ValueError(f"{name} must be {length} hexadecimal characters, got {value!r}")
    return digest


def verified_copy_exists(
    dest: str | os.PathLike[str],
    *,
    expected_size: int | None = None,
    sha256: str | None = None,
    md5: str | None = None,
) -> bool:
    """True when `dest` is a verified copy, so the download can be skipped without a request.

    Verified means: the size matches `expected_size` (if given) and the content matches `sha256`
    and/or `md5` when given, or else the sha256 recorded in the `<dest>.sha256` sidecar. A file
    with neither a known checksum nor a sidecar is never taken as verified.
    """
    dest = Path(dest)
    sha256 = _normalise_digest(sha256, "sha256", 64)
    md5 = _normalise_digest(md5, "md5", 32)
    if not dest.is_file():
        return False
    if expected_size is not None and dest.stat().st_size != expected_size:
        log.warning("%s exists but has the wrong size; downloading it again", dest)
        return False
    reference = sha256 or (None if md5 else read_sidecar(dest))
    if reference is None and md5 is None:
        log.info("%s exists but cannot be verified (no checksum, no sidecar); downloading", dest)
        return False
    digests = hash_file(dest, md5=md5 is not None)
    if (reference and digests.sha256 != reference) or (md5 and digests.md5 != md5):
        log.warning("%s exists but fails checksum verification; downloading it again", dest)
        return False
    if read_sidecar(dest) != digests.sha256:
        try:
            _write_sidecar(dest, digests.sha256)
        except OSError:  # a read-only data folder: the copy is still verified
            log.debug("cannot write the sidecar for %s", dest)
    return True


# --------------------------------------------------------------------------------------------
# HTTP helpers
# --------------------------------------------------------------------------------------------


class _Transient(Exception):
    """An attempt failed in a way that retrying may fix."""

    def __init__(self, reason: str, *, received: int = 0, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.received = received
        self.retry_after = retry_after


class _Restart(Exception):
    """The partial file is unusable for resuming: it was deleted, start again from byte 0."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """(first byte, last byte, total) from a Content-Range header; None where unknown."""
    match = _CONTENT_RANGE.match(value or "")
    if not match:
        return None, None, None
    first, last, total = match.groups()
    return (
        int(first) if first is not None else None,
        int(last) if last is not None else None,
        int(total) if total and total != "*" else None,
    )


def _fatal_status_message(status: int, reason: str, url: str) -> str:
    head = f"HTTP {status} {reason} for {url}"
    if status == 404 or status == 410:
        return (
            f"{head}: the file is not (or no longer) at this address. Check the URL, dataset slug "
            "or manifest entry (the source may have moved) and update the configuration."
        )
    if status == 403:
        return (
            f"{head}: access denied. Check your credentials, and that you have accepted the "
            "dataset's licence / terms of use on its web page (signed in with the same account), "
            "then run again."
        )
    if status == 401:
        return (
            f"{head}: the server needs valid credentials and got none or was refused them. "
            "Check your credentials (for Kaggle: see leukbench.credentials), then run again."
        )
    return f"{head}: the server refused the request; retrying will not help."


def _iter_body(response: requests.Response, chunk_size: int) -> Iterator[bytes]:
    """The response body as raw bytes (no transfer decoding), so byte offsets match Range."""
    raw = response.raw
    if raw is None:  # pragma: no cover - requests always sets raw for streamed responses
        yield from response.iter_content(chunk_size)
        return
    yield from raw.stream(chunk_size, decode_content=False)


_NOT_RETRYABLE: tuple[type[BaseException], ...] = (
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
    requests.exceptions.TooManyRedirects,
)
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)


class _Progress:
    """A tqdm bar (bytes, rate, ETA) that can be restarted per attempt, or nothing."""

    def __init__(self, enabled: bool, desc: str) -> None:
        self._bar: Any = None
        if enabled:
            self._bar = tqdm(
                total=None,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                leave=False,
                dynamic_ncols=True,
            )

    def start(self, total: int | None, initial: int) -> None:
        if self._bar is not None:
            self._bar.reset(total=total)
            self._bar.update(initial)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _check_free_space(folder: Path, needed: int, url: str) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DownloadError(
            f"not enough disk space in {folder} for {url}: need {needed:,} more bytes, "
            f"{free:,} free. Free some space or point the download folder elsewhere.",
            url=url,
        )


@dataclass
class _Request:
    session: requests.Session
    url: str
    safe_url: str
    headers: dict[str, str]
    auth: AuthBase | tuple[str, str] | None
    timeout: Timeout
    chunk_size: int
    expected_size: int | None
    secrets: list[str]


def _attempt(req: _Request, part: Path, bar: _Progress) -> None:
    """One HTTP request that extends `part` towards the complete file.

    Returns when `part` holds the whole body; raises _Transient (retry), _Restart (start from 0,
    no backoff), HTTPStatusError / IntegrityError / DownloadError (give up).
    """
    offset = part.stat().st_size if part.exists() else 0
    if req.expected_size is not None and offset > req.expected_size:
        log.warning("%s is larger than the expected size; starting again", part)
        part.unlink()
        offset = 0
    if req.expected_size is not None and 0 < offset == req.expected_size:
        return  # complete from an earlier run; verified by the caller
    headers = dict(req.headers)
    headers["Accept-Encoding"] = "identity"
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = req.session.get(
            req.url,
            headers=headers,
            auth=req.auth,
            stream=True,
            timeout=req.timeout,
            allow_redirects=True,
        )
    except _NOT_RETRYABLE as exc:
        raise DownloadError(
            f"cannot request {req.safe_url}: {type(exc).__name__}. Check the URL.", url=req.safe_url
        ) from None
    except requests.RequestException as exc:
        # The exception text can embed the request path and query: only its type is reported.
        raise _Transient(f"connection failed ({type(exc).__name__})") from None
    with response:
        status = response.status_code
        if status == 416 and offset:
            _, _, total = _parse_content_range(response.headers.get("Content-Range"))
            if total is not None and total == offset:
                return
            log.warning("server refused to resume %s (HTTP 416); starting again", req.safe_url)
            part.unlink(missing_ok=True)
            raise _Restart
        if status in RETRYABLE_STATUS or 500 <= status <= 599:
            raise _Transient(
                f"HTTP {status} {response.reason}",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status not in (200, 206):
            message = _fatal_status_message(status, response.reason or "", req.safe_url)
            message = redact_text(message, req.secrets)
            raise HTTPStatusError(message, url=req.safe_url, status=status)

        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if status == 206:
            first, _, total = _parse_content_range(response.headers.get("Content-Range"))
            if not offset or first != offset:
                log.warning(
                    "server answered %s with an unexpected range; starting again", req.safe_url
                )
                part.unlink(missing_ok=True)
                raise _Restart
            mode = "ab"
            if total is None and length is not None:
                total = offset + length
        else:
            if offset:
                log.info("server ignored the Range request for %s; restarting", req.safe_url)
            offset = 0
            mode = "wb"
            total = length

        if req.expected_size is not None and total is not None and total != req.expected_size:
            part.unlink(missing_ok=True)
            raise IntegrityError(
                f"{req.safe_url} is {total:,} bytes according to the server, but "
                f"{req.expected_size:,} were expected: the file changed upstream or the "
                "configured size is wrong. Nothing was kept; fix the expected size/checksum.",
                url=req.safe_url,
            )
        if total is not None:
            _check_free_space(part.parent, total - offset, req.safe_url)

        bar.start(total, offset)
        received = 0
        with part.open(mode) as fh:
            body = _iter_body(response, req.chunk_size)
            while True:
                try:
                    chunk = next(body)
                except StopIteration:
                    break
                except _NETWORK_ERRORS as exc:
                    fh.flush()
                    raise _Transient(
                        f"connection dropped after {offset + received:,} bytes "
                        f"({type(exc).__name__})",
                        received=received,
                    ) from None
                fh.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
        if total is not None and offset + received < total:
            raise _Transient(
                f"connection closed after {offset + received:,} of {total:,} bytes",
                received=received,
            )


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    expected_size: int | None = None,
    sha256: str | None = None,
    md5: str | None = None,
    headers: Mapping[str, str] | None = None,
    auth: AuthBase | tuple[str, str] | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    max_wait: float = 120.0,
    timeout: Timeout = (15.0, 60.0),
    session: requests.Session | None = None,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    chunk_size: int = CHUNK_SIZE,
) -> Path:
    """Download `url` to `dest` (resumable, retried, verified, atomic) and return `dest`.

    Args:
        url: http(s) address of the file.
        dest: final path; the folder is created. `<dest>.part` and `<dest>.sha256` live beside it.
        expected_size: exact size in bytes, checked against the server's announcement (before
            downloading) and against the finished file.
        sha256, md5: expected hex digests; either, both or neither.
        headers: extra request headers (their sensitive values are never logged).
        auth: requests auth object or (user, password) tuple, e.g. from
            `leukbench.credentials.kaggle_auth()`.
        retries: how many times a transient failure (429, 408, 425, 5xx, connection error or
            dropped connection) is retried after the first attempt. An attempt that received
            bytes resets the count, so a slow but progressing transfer is never abandoned.
        backoff: first retry delay in seconds; it doubles per consecutive failure, capped at
            `max_wait`. A `Retry-After` header replaces the computed delay (also capped).
        timeout: requests timeout, (connect, read) seconds.
        session: a requests.Session to reuse (connection pooling, proxies); one is created
            and closed otherwise.
        progress: show a tqdm bar with bytes, rate and ETA.
        sleep: the sleep function used between retries (tests pass a recorder).
        chunk_size: bytes per read.

    Returns:
        `dest` as a Path; the file there is complete and matches every known check.

    Raises:
        HTTPStatusError: 401/403/404/410 or another non-retryable status, at once.
        IntegrityError: size or checksum mismatch; the bad partial file is deleted.
        RetriesExhaustedError: transient failures outlasted `retries`; a non-empty `.part` is
            kept for resuming on the next run (it is never taken for a finished file).
        DownloadError: anything else that stops the download (e.g. not enough disk space).
    """
    dest = Path(dest)
    sha256 = _normalise_digest(sha256, "sha256", 64)
    md5 = _normalise_digest(md5, "md5", 32)
    if expected_size is not None and expected_size < 0:
        raise ValueError(f"expected_size must be >= 0, got {expected_size}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    request_headers = dict(headers or {})
    secrets = secrets_of(request_headers, auth)
    if isinstance(auth, tuple):
        secrets = sorted({*secrets, str(auth[1])}, key=len, reverse=True)
    safe_url = redact_text(redact_url(url), secrets)

    if verified_copy_exists(dest, expected_size=expected_size, sha256=sha256, md5=md5):
        log.info("%s is already present and verified; skipping %s", dest, safe_url)
        return dest
    if dest.exists():
        dest.unlink()
        sidecar_path(dest).unlink(missing_ok=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)

    own_session = session is None
    req = _Request(
        session=session if session is not None else requests.Session(),
        url=url,
        safe_url=safe_url,
        headers=request_headers,
        auth=auth,
        timeout=timeout,
        chunk_size=chunk_size,
        expected_size=expected_size,
        secrets=secrets,
    )
    bar = _Progress(progress, dest.name)
    log.info("downloading %s -> %s", safe_url, dest)
    log_filter = _RedactingFilter(secrets)
    for name in _FILTERED_LOGGERS:
        logging.getLogger(name).addFilter(log_filter)
    try:
        failures = 0
        restarts = 0
        while True:
            try:
                _attempt(req, part, bar)
                break
            except _Restart:
                restarts += 1
                if restarts > retries + 1:
                    raise DownloadError(
                        f"{safe_url}: the server keeps answering resume requests with the wrong "
                        "range; giving up. Delete the .part file and run again.",
                        url=safe_url,
                    ) from None
            except _Transient as exc:
                failures = 0 if exc.received > 0 else failures + 1
                if failures > retries:
                    if part.exists() and part.stat().st_size == 0:
                        part.unlink()
                    kept = (
                        f"; {part.stat().st_size:,} bytes are kept in {part} to resume next time"
                        if part.exists()
                        else ""
                    )
                    raise RetriesExhaustedError(
                        f"giving up on {safe_url} after {retries + 1} consecutive failed attempts "
                        f"(last: {exc.reason}){kept}. The server may be overloaded or down: "
                        "try again later.",
                        url=safe_url,
                    ) from None
                delay = backoff * (2 ** max(failures - 1, 0))
                if exc.retry_after is not None:
                    delay = exc.retry_after
                delay = max(0.0, min(delay, max_wait))
                log.warning(
                    "%s: %s; retry %d/%d in %.1f s",
                    safe_url,
                    exc.reason,
                    max(failures, 1),
                    retries,
                    delay,
                )
                sleep(delay)
    finally:
        bar.close()
        if own_session:
            req.session.close()
        for name in _FILTERED_LOGGERS:
            logging.getLogger(name).removeFilter(log_filter)

    _verify_and_place(part, dest, safe_url, expected_size, sha256, md5)
    log.info("downloaded and verified %s", dest)
    return dest


def _verify_and_place(
    part: Path,
    dest: Path,
    safe_url: str,
    expected_size: int | None,
    sha256: str | None,
    md5: str | None,
) -> None:
    if not part.exists():
        part.touch()  # a legitimately empty body
    digests = hash_file(part, md5=md5 is not None)
    problems: list[str] = []
    if expected_size is not None and digests.size != expected_size:
        problems.append(f"size {digests.size:,} bytes, expected {expected_size:,}")
    if sha256 is not None and digests.sha256 != sha256:
        problems.append(f"sha256 {digests.sha256}, expected {sha256}")
    if md5 is not None and digests.md5 != md5:
        problems.append(f"md5 {digests.md5}, expected {md5}")
    if problems:
        part.unlink(missing_ok=True)
        raise IntegrityError(
            f"verification failed for {safe_url}: {'; '.join(problems)}. The partial file was "
            "deleted. If the source was updated, update the expected size/checksum; otherwise "
            "run again (the transfer may have been corrupted).",
            url=safe_url,
        )
    _write_sidecar(dest, digests.sha256)
    os.replace(part, dest)
