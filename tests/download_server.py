"""A scriptable local HTTP server for the download-layer tests (not a test module).

`serve()` starts a `DownloadServer` on 127.0.0.1 (a free port chosen by the OS) in a background
thread and stops it afterwards. It serves byte fixtures that the tests build from small synthetic
images, supports single `Range: bytes=N-[M]` requests, and can be scripted per path:

* drop the connection part-way through the body on the first N requests,
* answer a sequence of statuses first (e.g. 429 with `Retry-After: 0`, twice), then succeed,
* answer a status once the drops are used up (a partial body, then 503s),
* answer one status forever (500, 404, 403, ...),
* serve other bytes than registered (checksum mismatch),
* ignore Range (always 200 with the whole body).

It also mimics the two remote APIs the code uses:

* Kaggle: `GET /api/v1/datasets/download/<owner>/<dataset>` checks HTTP basic auth (username +
  key) or a bearer token, answers 401 without valid credentials, and redirects to a signed
  storage path on the same server, like kaggle.com does;
* TCIA NBIA v4: `GET /nbia-api/services/v4/getSeries?Collection=...` (JSON series list) and
  `GET /nbia-api/services/v4/getImage?NewFileNames=Yes&SeriesInstanceUID=...` (a zip).

Every request is recorded (path, query, Range, auth scheme, status) so tests can count them.
Also here: builders for synthetic image archives and a guard that refuses non-loopback
connections.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from PIL import Image

LOOPBACK = "127.0.0.1"
TCIA_PREFIX = "/nbia-api/services"
WORDPRESS_PREFIX = "/api/v2"
KAGGLE_PREFIX = "/api/v1/datasets/download/"


# --------------------------------------------------------------------------------------------
# Synthetic fixtures
# --------------------------------------------------------------------------------------------


def synthetic_image(seed: int, size: int = 24, fmt: str = "PNG") -> bytes:
    """A small smooth random colour image, encoded (PNG, BMP, JPEG, ...)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def image_members(names: list[str], fmt: str = "PNG", start_seed: int = 0) -> dict[str, bytes]:
    """{archive member name: encoded synthetic image} for `names`."""
    return {name: synthetic_image(start_seed + i, fmt=fmt) for i, name in enumerate(names)}


def build_zip(members: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def build_tar(members: Mapping[str, bytes], mode: str = "w:gz") -> bytes:
    """A tar archive (`mode` w, w:gz, w:bz2 or w:xz) of regular files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tf:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------------------------


@dataclass
class Script:
    """How the server misbehaves for one path; counters advance per request."""

    statuses: list[int] = field(default_factory=list)  # answered first, one per request
    retry_after: str | None = "0"  # Retry-After sent with 429/503 answers
    always_status: int | None = None  # answered to every request
    drop_after: int | None = None  # body bytes sent before dropping the connection
    drop_times: int = 0  # how many (successful-status) requests get dropped
    then_status: int | None = None  # answered once `statuses` and the drops are used up
    body: bytes | None = None  # served instead of the registered bytes
    ignore_range: bool = False  # answer 200 with the whole body even to Range requests
    hits: int = 0


@dataclass(frozen=True)
class Record:
    method: str
    path: str
    query: str
    range: str | None
    auth_scheme: str | None  # "Basic", "Bearer" or None; never the credential itself
    status: int


@dataclass
class KaggleDataset:
    data: bytes
    username: str | None = None
    key: str | None = None
    token: str | None = None
    redirect: bool = True


class DownloadServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__((LOOPBACK, 0), _Handler)
        self.lock = threading.Lock()
        self.files: dict[str, bytes] = {}
        self.scripts: dict[str, Script] = {}
        self.records: list[Record] = []
        self.kaggle: dict[str, KaggleDataset] = {}
        self.tcia: dict[str, list[dict[str, Any]]] = {}
        self.tcia_images: dict[str, bytes] = {}
        self.wp_collections: list[dict[str, Any]] = []
        self.wp_downloads: dict[int, dict[str, Any]] = {}

    # -- configuration ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def add_file(self, path: str, data: bytes, **script: Any) -> str:
        """Serve `data` at `path` (optionally scripted, see Script); return its URL."""
        with self.lock:
            self.files[path] = data
            if script:
                self.scripts[path] = Script(**script)
        return self.url(path)

    def set_script(self, path: str, **script: Any) -> None:
        with self.lock:
            self.scripts[path] = Script(**script)

    def add_kaggle_dataset(
        self,
        slug: str,
        data: bytes,
        *,
        username: str | None = None,
        key: str | None = None,
        token: str | None = None,
        redirect: bool = True,
    ) -> None:
        """Serve `data` as Kaggle dataset `owner/dataset`, for these credentials only."""
        with self.lock:
            self.kaggle[slug] = KaggleDataset(data, username, key, token, redirect)
            self.files[f"/kaggle-storage/{slug}.zip"] = data

    def add_tcia_collection(self, collection: str, series: Mapping[str, bytes]) -> None:
        """Serve DICOM-like series (uid -> zip bytes) of `collection` via getSeries/getImage."""
        rows = []
        for n, (uid, data) in enumerate(series.items()):
            rows.append(
                {
                    "SeriesInstanceUID": uid,
                    "Collection": collection,
                    "PatientID": f"P{n:03d}",
                    "Modality": "SM",
                    "ImageCount": 1,
                    "FileSize": len(data) * 2,
                }
            )
            self.tcia_images[uid] = data
        with self.lock:
            self.tcia[collection] = rows

    def add_tcia_wordpress_collection(
        self, title: str, downloads: list[tuple[str, str, bytes | None]]
    ) -> None:
        """Mimic TCIA's WordPress API (api/v2/collections/, api/v2/downloads/) for `title`.

        Each download is (download title, file path served here, bytes); bytes None stands for
        an Aspera-only package (its link points at a Faspex page).
        """
        ids = []
        with self.lock:
            for download_title, path, data in downloads:
                download_id = 1000 + len(self.wp_downloads)
                if data is None:
                    url = "https://faspex.cancerimagingarchive.net/aspera/faspex/package/1"
                else:
                    self.files[path] = data
                    url = self.url(path)
                self.wp_downloads[download_id] = {
                    "id": download_id,
                    "download_title": download_title,
                    "download_url": url,
                    "download_size": round(len(data or b"") / 1e6, 1),
                    "download_size_unit": "MB",
                }
                ids.append(download_id)
            self.wp_collections.append(
                {
                    "id": 500 + len(self.wp_collections),
                    "slug": title.lower().replace(" ", "-"),
                    "collection_title": title,
                    "collection_short_title": title,
                    "collection_downloads": ids,
                }
            )

    # -- inspection ---------------------------------------------------------------------------

    def requests_for(self, path: str) -> list[Record]:
        with self.lock:
            return [r for r in self.records if r.path == path]

    def request_count(self) -> int:
        with self.lock:
            return len(self.records)

    def _record(self, record: Record) -> None:
        with self.lock:
            self.records.append(record)


class _Handler(BaseHTTPRequestHandler):
    server: DownloadServer
    timeout = 10  # seconds a silent client may hold a handler thread
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    # -- plumbing -----------------------------------------------------------------------------

    def _auth_scheme(self) -> str | None:
        value = self.headers.get("Authorization")
        return value.split(" ", 1)[0] if value else None

    def _send(
        self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> None:
        split = urlsplit(self.path)
        self.server._record(
            Record(
                "GET",
                split.path,
                split.query,
                self.headers.get("Range"),
                self._auth_scheme(),
                status,
            )
        )
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve_bytes(self, data: bytes, script: Script | None) -> None:
        n = 0
        if script is not None:
            with self.server.lock:
                n = script.hits
                script.hits += 1
            if script.always_status is not None:
                self._send_status(script.always_status, script)
                return
            if n < len(script.statuses):
                self._send_status(script.statuses[n], script)
                return
            dropped_so_far = n - len(script.statuses)
            if script.then_status is not None and dropped_so_far >= script.drop_times:
                self._send_status(script.then_status, script)
                return
            if script.body is not None:
                data = script.body
        range_header = self.headers.get("Range")
        start = 0
        status = 200
        headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if range_header and not (script and script.ignore_range):
            first = range_header.removeprefix("bytes=").split("-", 1)[0]
            start = int(first)
            if start >= len(data):
                self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        drop = (
            script is not None
            and script.drop_after is not None
            and n - len(script.statuses) < script.drop_times
        )
        if not drop:
            self._send(status, body, headers)
            return
        assert script is not None and script.drop_after is not None
        split = urlsplit(self.path)
        self.server._record(
            Record("GET", split.path, split.query, range_header, self._auth_scheme(), status)
        )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: script.drop_after])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _send_status(self, status: int, script: Script | None = None) -> None:
        headers = {"Content-Type": "text/plain"}
        if status in (429, 503) and script is not None and script.retry_after is not None:
            headers["Retry-After"] = script.retry_after
        if status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="kaggle"'
        self._send(status, f"status {status}\n".encode(), headers)

    # -- routes -------------------------------------------------------------------------------

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        path = split.path
        with self.server.lock:
            data = self.server.files.get(path)
            script = self.server.scripts.get(path)
        if data is not None:
            self._serve_bytes(data, script)
        elif path.startswith(KAGGLE_PREFIX):
            self._kaggle(path.removeprefix(KAGGLE_PREFIX), script)
        elif path == f"{WORDPRESS_PREFIX}/collections/":
            self._wordpress(self._wp_collections(parse_qs(split.query)))
        elif path == f"{WORDPRESS_PREFIX}/downloads/":
            self._wordpress(self._wp_downloads(parse_qs(split.query)))
        elif path == f"{TCIA_PREFIX}/v4/getSeries":
            self._tcia_series(parse_qs(split.query))
        elif path == f"{TCIA_PREFIX}/v4/getImage":
            self._tcia_image(parse_qs(split.query), script)
        else:
            self._send_status(404)

    def _kaggle(self, slug: str, script: Script | None) -> None:
        with self.server.lock:
            dataset = self.server.kaggle.get(slug)
        if dataset is None:
            self._send_status(404)
            return
        if not self._kaggle_authorised(dataset):
            self._send_status(401)
            return
        if script is not None and (script.always_status or script.statuses):
            self._serve_bytes(dataset.data, script)
            return
        if dataset.redirect:
            location = f"/kaggle-storage/{slug}.zip?X-Goog-Signature=0123456789abcdef"
            self._send(302, b"", {"Location": location})
        else:
            self._serve_bytes(dataset.data, script)

    def _kaggle_authorised(self, dataset: KaggleDataset) -> bool:
        value = self.headers.get("Authorization", "")
        scheme, _, credential = value.partition(" ")
        if scheme == "Bearer" and dataset.token is not None:
            return credential == dataset.token
        if scheme == "Basic" and dataset.username is not None:
            try:
                decoded = base64.b64decode(credential).decode()
            except (ValueError, UnicodeDecodeError):
                return False
            return decoded == f"{dataset.username}:{dataset.key}"
        return False

    def _wp_collections(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        search = query.get("search", [""])[0].lower()
        with self.server.lock:
            return [
                c for c in self.server.wp_collections if search in c["collection_title"].lower()
            ]

    def _wp_downloads(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        wanted = [int(i) for i in query.get("id", [""])[0].split(",") if i]
        with self.server.lock:
            return [self.server.wp_downloads[i] for i in wanted if i in self.server.wp_downloads]

    def _wordpress(self, results: list[dict[str, Any]]) -> None:
        body = json.dumps({"results": results, "page": 1, "total_pages": 1}).encode()
        self._send(200, body, {"Content-Type": "application/json"})

    def _tcia_series(self, query: dict[str, list[str]]) -> None:
        collection = query.get("Collection", [""])[0]
        with self.server.lock:
            rows = self.server.tcia.get(collection)
        body = json.dumps(rows or []).encode()
        self._send(200, body, {"Content-Type": "application/json"})

    def _tcia_image(self, query: dict[str, list[str]], script: Script | None) -> None:
        uid = query.get("SeriesInstanceUID", [""])[0]
        data = self.server.tcia_images.get(uid)
        if data is None:
            self._send_status(404)
        else:
            self._serve_bytes(data, script)


@contextmanager
def serve(join_timeout: float = 5.0) -> Iterator[DownloadServer]:
    """A running DownloadServer on 127.0.0.1, stopped (and its thread joined) on exit."""
    server = DownloadServer()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(join_timeout)


# --------------------------------------------------------------------------------------------
# Test isolation helpers
# --------------------------------------------------------------------------------------------


def allow_only_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any socket connection to a non-loopback address fail loudly (no internet in tests)."""
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in (
            "127.0.0.1",
            "::1",
            "localhost",
        ):
            raise AssertionError(f"test tried to connect to {host!r}: only loopback is allowed")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


KAGGLE_ENV_VARS = (
    "KAGGLE_USERNAME",
    "KAGGLE_KEY",
    "KAGGLE_CONFIG_DIR",
    "KAGGLE_API_TOKEN",
    "KAGGLE_KERNEL_RUN_TYPE",
    "KAGGLE_DATA_PROXY_URL",
)


def isolate_kaggle_env(monkeypatch: pytest.MonkeyPatch, home: Any) -> None:
    """No KAGGLE_* variables, and HOME pointing at an empty folder."""
    for name in KAGGLE_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
