"""download(): resume, retry, verification, atomic placement and redaction, on a local server."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from download_server import (
    DownloadServer,
    allow_only_loopback,
    build_tar,
    build_zip,
    image_members,
    serve,
    sha256_hex,
)

from leukbench.download import (
    DownloadError,
    HTTPStatusError,
    IntegrityError,
    RetriesExhaustedError,
    download,
    parse_retry_after,
    part_path,
    read_sidecar,
    redact_url,
    sidecar_path,
    verified_copy_exists,
)

SECRET = "s3cr3t-kaggle-key-0123456789abcdef"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[DownloadServer]:
    allow_only_loopback(monkeypatch)
    with serve() as srv:
        assert urlsplit(srv.base_url).hostname == "127.0.0.1"
        yield srv


@pytest.fixture
def archive_bytes() -> bytes:
    """A ~30 KB zip of synthetic images: big enough to be cut mid-body."""
    names = [f"Original/Benign/img-{i:03d}.bmp" for i in range(12)]
    return build_zip(image_members(names, fmt="BMP"))


class Sleeps(list[float]):
    """A recording stand-in for time.sleep."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_downloads_verifies_and_writes_sidecar(
    server: DownloadServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    url = server.add_file("/data/cells.zip", archive_bytes)
    dest = tmp_path / "out" / "cells.zip"

    result = download(
        url,
        dest,
        expected_size=len(archive_bytes),
        sha256=sha256_hex(archive_bytes),
        md5=hashlib.md5(archive_bytes).hexdigest(),
        progress=True,
    )

    assert result == dest
    assert dest.read_bytes() == archive_bytes
    assert read_sidecar(dest) == sha256_hex(archive_bytes)
    assert sidecar_path(dest).read_text().endswith("  cells.zip\n")
    assert not part_path(dest).exists()
    assert len(server.requests_for("/data/cells.zip")) == 1


@pytest.mark.parametrize("known_checksum", [True, False], ids=["sha256", "sidecar-only"])
def test_second_run_makes_zero_requests(
    server: DownloadServer, archive_bytes: bytes, tmp_path: Path, known_checksum: bool
) -> None:
    url = server.add_file("/data/cells.tar.gz", build_tar({"a.bin": archive_bytes}))
    checksum = sha256_hex(build_tar({"a.bin": archive_bytes})) if known_checksum else None
    dest = tmp_path / "cells.tar.gz"
    download(url, dest, sha256=checksum, progress=False)
    before = server.request_count()

    download(url, dest, sha256=checksum, progress=False)
    download(url, dest, sha256=checksum, progress=False)

    assert server.request_count() == before == 1
    assert verified_copy_exists(dest, sha256=checksum)


def test_unverifiable_or_damaged_existing_copy_is_downloaded_again(
    server: DownloadServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    url = server.add_file("/data/cells.zip", archive_bytes)
    dest = tmp_path / "cells.zip"
    dest.write_bytes(b"left over by someone else")  # no checksum, no sidecar: not trusted
    download(url, dest, progress=False)
    assert dest.read_bytes() == archive_bytes

    dest.write_bytes(b"X" * len(archive_bytes))  # same size, sidecar no longer matches
    assert not verified_copy_exists(dest)
    download(url, dest, progress=False)
    assert dest.read_bytes() == archive_bytes
    assert len(server.requests_for("/data/cells.zip")) == 2


def test_resumes_with_range_after_dropped_connection(
    server: DownloadServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    half = len(archive_bytes) // 2
    url = server.add_file("/data/cells.zip", archive_bytes, drop_after=half, drop_times=1)
    sleeps = Sleeps()
    dest = tmp_path / "cells.zip"

    download(url, dest, sha256=sha256_hex(archive_bytes), sleep=sleeps, progress=False)

    first, second = server.requests_for("/data/cells.zip")
    assert first.range is None
    assert second.range == f"bytes={half}-" and second.status == 206
    assert dest.read_bytes() == archive_bytes
    assert len(sleeps) == 1


def test_restarts_cleanly_when_server_ignores_range(
    server: DownloadServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    url = server.add_file(
        "/data/cells.zip", archive_bytes, drop_after=5000, drop_times=1, ignore_range=True
    )
    dest = tmp_path / "cells.zip"

    download(url, dest, sha256=sha256_hex(archive_bytes), sleep=Sleeps(), progress=False)

    _, second = server.requests_for("/data/cells.zip")
    assert second.range == "bytes=5000-" and second.status == 200
    assert dest.read_bytes() == archive_bytes  # not 5000 stale bytes + the whole file


def test_complete_partial_from_earlier_run_is_finished_without_body(
    server: DownloadServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    url = server.add_file("/data/cells.zip", archive_bytes)
    dest = tmp_path / "cells.zip"
    part_path(dest).write_bytes(archive_bytes)

    download(url, dest, progress=False)  # size unknown: asks for the rest, gets 416 */size

    (record,) = server.requests_for("/data/cells.zip")
    assert record.status == 416
    assert dest.read_bytes() == archive_bytes and not part_path(dest).exists()


def test_checksum_mismatch_deletes_partial_and_says_so(
    server: DownloadServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    url = server.add_file("/data/cells.zip", archive_bytes, body=archive_bytes[::-1])
    dest = tmp_path / "cells.zip"

    with pytest.raises(IntegrityError, match=r"sha256 \w+, expected") as err:
        download(url, dest, sha256=sha256_hex(archive_bytes), progress=False)

    assert url in str(err.value) and "deleted" in str(err.value)
    assert not dest.exists() and not part_path(dest).exists()
    assert not sidecar_path(dest).exists()


def test_announced_size_mismatch_fails_before_downloading(
    server: DownloadServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    url = server.add_file("/data/cells.zip", archive_bytes)
    dest = tmp_path / "cells.zip"
    with pytest.raises(IntegrityError, match="expected"):
        download(url, dest, expected_size=len(archive_bytes) + 1, progress=False)
    assert not dest.exists() and not part_path(dest).exists()


def test_429_with_retry_after_then_success(
    server: DownloadServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    url = server.add_file("/data/cells.zip", archive_bytes, statuses=[429, 429], retry_after="0")
    sleeps = Sleeps()
    dest = tmp_path / "cells.zip"

    download(url, dest, backoff=5.0, sleep=sleeps, progress=False)

    assert [r.status for r in server.requests_for("/data/cells.zip")] == [429, 429, 200]
    assert sleeps == [0.0, 0.0]  # Retry-After: 0 replaces the 5 s backoff
    assert dest.read_bytes() == archive_bytes


def test_5xx_exhaustion_gives_clear_error_and_no_file(
    server: DownloadServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    url = server.add_file("/data/cells.zip", archive_bytes, always_status=500)
    sleeps = Sleeps()
    dest = tmp_path / "cells.zip"

    with pytest.raises(RetriesExhaustedError) as err:
        download(url, dest, retries=3, backoff=0.01, sleep=sleeps, progress=False)

    message = str(err.value)
    assert url in message and "4 consecutive failed attempts" in message and "HTTP 500" in message
    assert len(server.requests_for("/data/cells.zip")) == 4
    assert sleeps == pytest.approx([0.01, 0.02, 0.04])
    assert not dest.exists() and not sidecar_path(dest).exists()
    assert not part_path(dest).exists()
    assert not verified_copy_exists(dest)

    server.set_script("/data/cells.zip")  # the server recovers: a later run completes
    download(url, dest, sha256=sha256_hex(archive_bytes), progress=False)
    assert dest.read_bytes() == archive_bytes


def test_exhaustion_after_partial_body_keeps_part_for_next_run(
    server: DownloadServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    url = server.add_file(
        "/data/cells.zip", archive_bytes, drop_after=4096, drop_times=1, then_status=503
    )
    dest = tmp_path / "cells.zip"

    with pytest.raises(RetriesExhaustedError, match="4,096 bytes are kept in"):
        download(url, dest, retries=2, sleep=Sleeps(), progress=False)

    # 1 partial body (resets the failure count) + 3 consecutive 503s.
    assert [r.status for r in server.requests_for("/data/cells.zip")] == [200, 503, 503, 503]
    assert not dest.exists() and not verified_copy_exists(dest)
    assert part_path(dest).stat().st_size == 4096

    server.set_script("/data/cells.zip")  # recovered: the next run resumes from byte 4096
    download(url, dest, sha256=sha256_hex(archive_bytes), progress=False)
    assert server.requests_for("/data/cells.zip")[-1].range == "bytes=4096-"
    assert dest.read_bytes() == archive_bytes


@pytest.mark.parametrize(
    ("status", "fragments"),
    [
        (404, ["HTTP 404", "Check the URL"]),
        (403, ["HTTP 403", "credentials", "licence"]),
        (401, ["HTTP 401", "credentials"]),
    ],
)
def test_client_errors_fail_at_once_with_advice(
    server: DownloadServer, tmp_path: Path, status: int, fragments: list[str]
) -> None:
    url = server.add_file("/data/cells.zip", b"never served", always_status=status)
    sleeps = Sleeps()
    dest = tmp_path / "cells.zip"

    with pytest.raises(HTTPStatusError) as err:
        download(url, dest, sleep=sleeps, progress=False)

    assert err.value.status == status
    assert url in str(err.value)
    for fragment in fragments:
        assert fragment in str(err.value)
    assert len(server.requests_for("/data/cells.zip")) == 1 and sleeps == []
    assert not dest.exists() and not part_path(dest).exists()


def test_unknown_path_is_404(server: DownloadServer, tmp_path: Path) -> None:
    with pytest.raises(HTTPStatusError, match="HTTP 404"):
        download(server.url("/nowhere.zip"), tmp_path / "x.zip", progress=False)


def test_connection_refused_is_retried_then_reported(tmp_path: Path) -> None:
    with serve() as srv:
        url = srv.url("/gone.zip")
    sleeps = Sleeps()  # the server is stopped: its port now refuses connections
    with pytest.raises(RetriesExhaustedError, match="connection failed"):
        download(url, tmp_path / "gone.zip", retries=2, backoff=0.0, sleep=sleeps, progress=False)
    assert len(sleeps) == 2
    assert not (tmp_path / "gone.zip.part").exists()


def test_credentials_never_appear_in_errors_or_logs(
    server: DownloadServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.add_file("/data/forbidden.zip", b"x", always_status=403)
    server.add_file("/data/flaky.zip", b"x", always_status=503)
    headers = {"Authorization": f"Bearer {SECRET}", "X-Api-Key": SECRET + "2"}
    errors = []
    cases: list[tuple[str, type[Exception]]] = [
        ("/data/forbidden.zip", HTTPStatusError),
        ("/data/flaky.zip", RetriesExhaustedError),
    ]
    for path, exc_type in cases:
        url = server.url(path) + f"?token={SECRET}3&user=me"
        with pytest.raises(exc_type) as err:
            download(
                url,
                tmp_path / "f.zip",
                headers=headers,
                auth=("user", SECRET + "4"),
                retries=1,
                sleep=Sleeps(),
                progress=False,
            )
        errors.append(f"{err.value!s} {err.value!r}")

    text = " ".join(errors) + caplog.text
    assert SECRET not in text
    assert "token=%2A%2A%2A" in text or "token=***" in text
    assert "user=me" in text  # harmless query values are kept for diagnosis
    assert any(r.auth_scheme == "Basic" for r in server.records)  # auth was really sent


def test_redact_url_hides_passwords_and_secret_query_values() -> None:
    url = "https://alice:pw123@host.example/a/b.zip?X-Goog-Signature=abc&name=b.zip&api_key=k"
    redacted = redact_url(url)
    assert "pw123" not in redacted and "abc" not in redacted and "api_key=k" not in redacted
    assert redacted.startswith("https://alice:***@host.example/a/b.zip?")
    assert "name=b.zip" in redacted


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_rejects_malformed_checksum_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sha256 must be 64"):
        download("http://127.0.0.1:9/x", tmp_path / "x", sha256="abc", progress=False)
    with pytest.raises(DownloadError, match="Check the URL"):
        download("127.0.0.1/x", tmp_path / "x", progress=False)
