"""Source adapters: turn a dataset reference into a list of `RemoteFile`s to download.

The adapters only *resolve* (url, file name, size, checksum); `fetch()` downloads one entry with
`leukbench.download.download` and the right credentials. Every endpoint base URL is a parameter,
so tests (and mirrors) can point them at another server.

How each source is resolved
---------------------------
Kaggle (`kaggle_dataset_files`)
    No request is made. A dataset slug `owner/dataset` (or `owner/dataset/versions/N`, the
    kagglehub handle format) maps to the public API archive endpoint
    `{base_url}/datasets/download/{owner}/{dataset}[?datasetVersionNumber=N]`, default base
    `https://www.kaggle.com/api/v1`. The download needs Kaggle credentials
    (`leukbench.credentials`: HTTP basic auth with username/key, or a bearer API token); the
    server usually redirects to a signed storage URL, and requests drops the Authorization
    header when the redirect leaves the host. The archive size and checksum are not published by
    this endpoint: pin them in the configuration (`size=`, `sha256=`) once known.

TCIA, non-DICOM collections (`tcia_manifest_files`)
    C-NMC 2019 (BMP cell images), AML-Cytomorphology_LMU (TIFF) and
    AML-Cytomorphology_MLL_Helmholtz (TIFF) are published by TCIA as image archives linked from
    each collection's web page (direct zip links and/or IBM Aspera Faspex packages), labelled as
    "analysis results"/non-DICOM data rather than as NBIA DICOM series. Their links change over
    time and some need a browser or the Aspera client, so they are not hard-coded: the user
    copies the direct (https) links into a manifest file (YAML or JSON), which this adapter
    validates and resolves. Aspera-only packages must be fetched by hand and placed where the
    workflow expects them; the manifest then pins their size/checksum for verification.

TCIA, DICOM series (`tcia_series_files`)
    Where a collection *does* have DICOM series in NBIA, `tcia_utils.nbia.getSeries` (tcia-utils
    3.3.5, imported lazily because it pulls pandas, plotly, IPython, pydicom, duckdb, pyarrow and
    idc-index, and configures the root logger on import) lists the series with their
    SeriesInstanceUID and FileSize. Each series becomes one zip from
    `{base_url}/v4/getImage?NewFileNames=Yes&SeriesInstanceUID=<uid>`. FileSize is the total of
    the DICOM files, not the size of the zip NBIA builds on the fly, so it is reported as
    `unpacked_size` (useful for disk planning and `safe_extract` limits), never as the download
    size. tcia-utils hard-codes its host, so the configurable base URL is applied by temporarily
    replacing its `setApiUrl` (under a lock); it also sends requests without a timeout and
    answers errors with None, which is turned into a clear `SourceError` here.

The manifest format::

    collections:
      "C-NMC 2019":
        base_url: https://example.org/some/folder   # optional; for relative urls
        files:
          - url: C-NMC_Leukemia.zip                  # absolute, or relative to base_url
            filename: C-NMC_Leukemia.zip             # optional; default: last url segment
            size: 123456789                          # optional, bytes of the download
            sha256: <64 hex>                         # optional
            md5: <32 hex>                            # optional
            unpacked_size: 987654321                 # optional, for extraction limits
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any, Literal
from urllib.parse import quote, urlencode, urljoin, urlsplit

import requests
import yaml

from leukbench.credentials import (
    CredentialsError,
    KaggleCredentials,
    find_kaggle_credentials,
    kaggle_auth,
)
from leukbench.download import HTTPStatusError, download, verified_copy_exists

log = logging.getLogger(__name__)

KAGGLE_API_BASE = "https://www.kaggle.com/api/v1"
TCIA_NBIA_BASE = "https://nbia.cancerimagingarchive.net/nbia-api/services"
TCIA_COLLECTIONS = (
    "C-NMC 2019",
    "AML-Cytomorphology_LMU",
    "AML-Cytomorphology_MLL_Helmholtz",
)

_KAGGLE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DICOM_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
_CNMC_NAME = re.compile(
    r"^UID_(?P<subject>[A-Za-z]*\d+)_(?P<image>\d+)_(?P<cell>\d+)_(?P<label>[A-Za-z]+)\.bmp$",
    re.IGNORECASE,
)
_NBIA_LOCK = threading.Lock()


class SourceError(ValueError):
    """A dataset reference or manifest that cannot be resolved into downloads."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to download.

    Attributes:
        url: where to download it from.
        filename: plain file name to save it as (no folders).
        size: exact size in bytes of the download, when known.
        sha256, md5: expected hex digests, when known.
        auth: which credentials the request needs ("kaggle"), or None.
        unpacked_size: bytes after extraction, when known (informational).
        description: free text for logs and reports.
    """

    url: str
    filename: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    auth: Literal["kaggle"] | None = None
    unpacked_size: int | None = None
    description: str = ""


# --------------------------------------------------------------------------------------------
# Kaggle
# --------------------------------------------------------------------------------------------


def kaggle_dataset_files(
    slug: str,
    *,
    base_url: str = KAGGLE_API_BASE,
    size: int | None = None,
    sha256: str | None = None,
    md5: str | None = None,
) -> list[RemoteFile]:
    """The archive of Kaggle dataset `slug` ("owner/dataset" or "owner/dataset/versions/N").

    Makes no request. `size`, `sha256` and `md5` pin the expected archive when known.
    """
    parts = slug.strip().split("/")
    version: int | None = None
    if len(parts) == 4 and parts[2] == "versions" and parts[3].isdigit():
        version = int(parts[3])
        parts = parts[:2]
    if len(parts) != 2 or not all(_KAGGLE_PART.match(p) for p in parts):
        raise SourceError(
            f"invalid Kaggle dataset slug {slug!r}: expected 'owner/dataset' or "
            "'owner/dataset/versions/N' as in the dataset's URL "
            "(https://www.kaggle.com/datasets/owner/dataset), e.g. 'mehradaria/leukemia'"
        )
    owner, dataset = parts
    url = f"{base_url.rstrip('/')}/datasets/download/{owner}/{dataset}"
    if version is not None:
        url += "?" + urlencode({"datasetVersionNumber": version})
    return [
        RemoteFile(
            url=url,
            filename=f"{dataset}.zip",
            size=size,
            sha256=sha256,
            md5=md5,
            auth="kaggle",
            description=f"Kaggle dataset {owner}/{dataset}"
            + (f" version {version}" if version is not None else ""),
        )
    ]


# --------------------------------------------------------------------------------------------
# TCIA: manifest of direct links
# --------------------------------------------------------------------------------------------


def _check_filename(name: str, where: str) -> str:
    if (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or "\x00" in name
    ):
        raise SourceError(f"{where}: filename {name!r} must be a plain file name (no folders)")
    return name


def _optional_int(value: Any, field: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SourceError(f"{where}: {field} must be a non-negative integer, got {value!r}")
    return value


def _optional_hex(value: Any, field: str, pattern: re.Pattern[str], where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.match(value.strip()):
        raise SourceError(f"{where}: {field} must be a hex digest, got {value!r}")
    return value.strip().lower()


def load_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML/JSON manifest file (see the module docstring) into a dict."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SourceError(f"cannot read manifest {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SourceError(f"manifest {path} is not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("collections"), dict):
        raise SourceError(f"manifest {path} must be a mapping with a 'collections' mapping")
    return data


def tcia_manifest_files(
    manifest: str | os.PathLike[str] | Mapping[str, Any],
    collection: str,
    *,
    base_url: str | None = None,
) -> list[RemoteFile]:
    """The files of TCIA `collection` listed in `manifest` (a path or an already-loaded dict).

    Relative `url`s are joined to `base_url` when given (it overrides the manifest's own
    `base_url`), else to the manifest's `base_url`.
    """
    where_file = "manifest" if isinstance(manifest, Mapping) else f"manifest {manifest}"
    data = dict(manifest) if isinstance(manifest, Mapping) else load_manifest(manifest)
    collections = data.get("collections")
    if not isinstance(collections, Mapping):
        raise SourceError(f"{where_file} must have a 'collections' mapping")
    if collection not in collections:
        raise SourceError(
            f"{where_file} has no collection {collection!r} (it has {sorted(collections)}); "
            "add its download links from the collection's TCIA page"
        )
    spec = collections[collection]
    if not isinstance(spec, Mapping) or not isinstance(spec.get("files"), list):
        raise SourceError(f"{where_file}, {collection!r}: expected a mapping with a 'files' list")
    root = base_url if base_url is not None else spec.get("base_url")
    entries: list[RemoteFile] = []
    seen: set[str] = set()
    for index, item in enumerate(spec["files"]):
        where = f"{where_file}, {collection!r} file #{index + 1}"
        if not isinstance(item, Mapping) or not isinstance(item.get("url"), str):
            raise SourceError(f"{where}: expected a mapping with a 'url' string")
        url = item["url"].strip()
        if not urlsplit(url).scheme:
            if not root:
                raise SourceError(f"{where}: relative url {url!r} needs a base_url")
            url = urljoin(str(root).rstrip("/") + "/", url)
        if urlsplit(url).scheme not in ("http", "https"):
            raise SourceError(f"{where}: url must be http(s), got {url!r}")
        default_name = PurePosixPath(urlsplit(url).path).name
        filename = _check_filename(str(item.get("filename") or default_name), where)
        if filename in seen:
            raise SourceError(f"{where}: filename {filename!r} is listed twice")
        seen.add(filename)
        entries.append(
            RemoteFile(
                url=url,
                filename=filename,
                size=_optional_int(item.get("size"), "size", where),
                sha256=_optional_hex(item.get("sha256"), "sha256", _HEX64, where),
                md5=_optional_hex(item.get("md5"), "md5", _HEX32, where),
                unpacked_size=_optional_int(item.get("unpacked_size"), "unpacked_size", where),
                description=str(item.get("description") or f"TCIA {collection}"),
            )
        )
    if not entries:
        raise SourceError(f"{where_file}, {collection!r}: the files list is empty")
    return entries


# --------------------------------------------------------------------------------------------
# TCIA: collection downloads through tcia-utils' WordPress API
# --------------------------------------------------------------------------------------------

TCIA_WORDPRESS_BASE = "https://cancerimagingarchive.net/api/v2/"
_WORDPRESS_LOCK = threading.Lock()
_SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def _import_wordpress() -> ModuleType:
    return _import_tcia_utils("wordpress", "resolve TCIA downloads")


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _ids(value: Any) -> list[int]:
    """Download ids from a collection record (ints, or objects carrying an id)."""
    if value is None:
        return []
    if not isinstance(value, list):
        value = [value]
    ids = []
    for item in value:
        raw = item.get("ID", item.get("id")) if isinstance(item, Mapping) else item
        try:
            ids.append(int(raw))
        except (TypeError, ValueError):
            raise SourceError(f"TCIA returned an unreadable download reference {item!r}") from None
    return ids


def _direct_url(item: Mapping[str, Any]) -> str | None:
    """The https link of a download, or None for Aspera/Faspex packages and search pages."""
    candidates = [item.get("download_url"), item.get("download_file")]
    for value in candidates:
        if isinstance(value, Mapping):
            value = value.get("url") or value.get("guid")
        if isinstance(value, list) and value:
            value = value[0]
        if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
            continue
        host_and_path = (urlsplit(value).netloc + urlsplit(value).path).lower()
        if "faspex" in host_and_path or "aspera" in host_and_path:
            continue
        if not PurePosixPath(urlsplit(value).path).suffix:
            continue  # a page, not a file
        return value
    return None


def _approx_size(item: Mapping[str, Any]) -> int | None:
    size, unit = item.get("download_size"), str(item.get("download_size_unit") or "B")
    try:
        return int(float(size) * _SIZE_UNITS[unit.upper()])
    except (TypeError, ValueError, KeyError):
        return None


def tcia_collection_files(
    collection: str,
    *,
    base_url: str = TCIA_WORDPRESS_BASE,
    wanted: list[str] | None = None,
) -> list[RemoteFile]:
    """The direct-download files of TCIA `collection`, from TCIA's WordPress API (tcia-utils).

    `collection` is matched against the title, short title and slug (ignoring case and
    punctuation). `wanted`: substrings of the download titles to keep (default: all). Sizes from
    the API are rounded ("11 GB"), so they are recorded as `unpacked_size` hints for disk checks,
    never used for verification.

    Raises SourceError when the API cannot be reached, the collection is unknown, or a wanted
    download has no direct link (Aspera-only packages: fetch them by hand and use a local source).
    """
    wordpress = _import_wordpress()
    fields = ["id", "slug", "collection_title", "collection_short_title", "collection_downloads"]
    with _WORDPRESS_LOCK:
        original = wordpress.base_url
        wordpress.base_url = base_url if base_url.endswith("/") else base_url + "/"
        try:
            records = wordpress.getCollections(query=collection, fields=fields)
            names = ("collection_title", "collection_short_title", "slug")
            found = [
                r
                for r in records or []
                if _norm(collection) in {_norm(str(r.get(k, ""))) for k in names}
            ]
            if records is None:
                raise SourceError(
                    f"TCIA's API at {base_url} did not answer the collection query for "
                    f"{collection!r} (see the log); check the network, or download the data by "
                    "hand and use source: local"
                )
            if not found:
                titles = sorted(str(r.get("collection_title")) for r in records)
                raise SourceError(
                    f"TCIA has no collection {collection!r} at {base_url} (the search found "
                    f"{titles}); fix datasets.<name>.tcia.collection"
                )
            ids = _ids(found[0].get("collection_downloads"))
            downloads = wordpress.getDownloads(ids=ids) if ids else []
        except requests.RequestException as exc:
            raise SourceError(
                f"cannot reach TCIA's API at {base_url} ({type(exc).__name__}); check the "
                "network, or download the data by hand and use source: local"
            ) from None
        finally:
            wordpress.base_url = original
    if downloads is None:
        raise SourceError(f"TCIA's API at {base_url} did not list the downloads of {collection!r}")
    chosen = [
        d
        for d in downloads
        if not wanted or any(w.lower() in str(d.get("download_title", "")).lower() for w in wanted)
    ]
    if not chosen:
        titles = sorted(str(d.get("download_title")) for d in downloads)
        raise SourceError(
            f"none of the downloads of TCIA {collection!r} matches {wanted} (downloads: "
            f"{titles}); fix datasets.<name>.tcia.downloads"
        )
    files: list[RemoteFile] = []
    for item in chosen:
        title = str(item.get("download_title") or item.get("slug") or "?")
        url = _direct_url(item)
        if url is None:
            raise SourceError(
                f"TCIA {collection!r} download {title!r} has no direct https link (it needs "
                "IBM Aspera or a browser). Fetch it by hand from the collection page, unpack "
                "it, and point the dataset at it with source: local and path: <folder>"
            )
        filename = _check_filename(PurePosixPath(urlsplit(url).path).name, f"download {title!r}")
        files.append(
            RemoteFile(
                url=url,
                filename=filename,
                unpacked_size=_approx_size(item),
                description=f"TCIA {collection}: {title}",
            )
        )
    return files


# --------------------------------------------------------------------------------------------
# TCIA: DICOM series through tcia-utils
# --------------------------------------------------------------------------------------------


def _import_tcia_utils(module: str, purpose: str) -> ModuleType:
    """tcia_utils.<module>, imported on first use without letting it reconfigure the root
    logger (tcia-utils calls logging.basicConfig on import)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return importlib.import_module(f"tcia_utils.{module}")
    except ImportError as exc:
        raise ImportError(
            f"tcia-utils is needed to {purpose}: pip install tcia-utils==3.3.5"
        ) from exc
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _import_nbia() -> ModuleType:
    return _import_tcia_utils("nbia", "list TCIA DICOM series")


@contextmanager
def _nbia_base_url(nbia: Any, base_url: str) -> Iterator[None]:
    """Point tcia_utils.nbia's requests at `base_url` (it hard-codes the TCIA host)."""
    base = base_url.rstrip("/")

    def set_api_url(endpoint: str, api_url: str = "nbia") -> str:
        return f"{base}/v1/" if endpoint == "getContentsByName" else f"{base}/v4/"

    with _NBIA_LOCK:
        original = nbia.setApiUrl
        nbia.setApiUrl = set_api_url
        try:
            yield
        finally:
            nbia.setApiUrl = original


def tcia_series_files(
    collection: str,
    *,
    base_url: str = TCIA_NBIA_BASE,
    modality: str | None = None,
) -> list[RemoteFile]:
    """One zip per DICOM series of TCIA `collection`, listed with tcia_utils.nbia.getSeries.

    Raises SourceError when the query fails or the collection has no DICOM series in NBIA
    (the case for collections published as non-DICOM archives: use `tcia_manifest_files`).
    """
    nbia = _import_nbia()
    with _nbia_base_url(nbia, base_url):
        series = nbia.getSeries(collection=collection, modality=modality or "")
    if not series:
        raise SourceError(
            f"TCIA lists no DICOM series for collection {collection!r} at {base_url} (or the "
            "query failed; see the log). Collections published as non-DICOM image archives "
            "(e.g. C-NMC 2019, AML-Cytomorphology_*) must be listed in a manifest: see "
            "tcia_manifest_files()."
        )
    base = base_url.rstrip("/")
    entries: list[RemoteFile] = []
    for row in series:
        uid = str(row.get("SeriesInstanceUID", ""))
        if not _DICOM_UID.match(uid):
            raise SourceError(f"TCIA returned an invalid SeriesInstanceUID {uid!r}")
        file_size = row.get("FileSize")
        entries.append(
            RemoteFile(
                url=f"{base}/v4/getImage?NewFileNames=Yes&SeriesInstanceUID={quote(uid)}",
                filename=f"{uid}.zip",
                unpacked_size=int(file_size) if isinstance(file_size, int | float) else None,
                description=(
                    f"TCIA {collection} patient {row.get('PatientID', '?')} "
                    f"{row.get('Modality', '?')} series, {row.get('ImageCount', '?')} images"
                ),
            )
        )
    return entries


# --------------------------------------------------------------------------------------------
# Downloading a resolved entry
# --------------------------------------------------------------------------------------------


def fetch(
    entry: RemoteFile,
    dest_dir: str | os.PathLike[str],
    *,
    credentials: KaggleCredentials | None = None,
    **download_kwargs: Any,
) -> Path:
    """Download `entry` into `dest_dir` (see `leukbench.download.download` for the kwargs).

    A verified copy already in place is returned without looking up credentials or making any
    request. Kaggle entries use `credentials`, or `find_kaggle_credentials()` when None; a 401
    from Kaggle becomes a `CredentialsError` with the instructions to fix it.
    """
    dest = Path(dest_dir) / _check_filename(entry.filename, f"entry for {entry.url}")
    if verified_copy_exists(dest, expected_size=entry.size, sha256=entry.sha256, md5=entry.md5):
        log.info("%s is already present and verified", dest)
        return dest
    creds: KaggleCredentials | None = None
    if entry.auth == "kaggle":
        creds = credentials if credentials is not None else find_kaggle_credentials()
        download_kwargs["auth"] = kaggle_auth(creds)
    try:
        return download(
            entry.url,
            dest,
            expected_size=entry.size,
            sha256=entry.sha256,
            md5=entry.md5,
            **download_kwargs,
        )
    except HTTPStatusError as exc:
        if creds is not None and exc.status == 401:
            raise CredentialsError(
                f"from {creds.source} were rejected by the server (HTTP 401 for {exc.url})"
            ) from None
        raise


# --------------------------------------------------------------------------------------------
# C-NMC 2019 file names
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CnmcName:
    """The parts of a C-NMC 2019 training file name `UID_<subject>_<image>_<cell>_<label>.bmp`.

    `label` is "all" (lymphoblast) or "hem" (normal); `subject` is kept as written (e.g. "11" or
    "H10"), since the challenge's subject-disjoint split groups on it.
    """

    subject: str
    label: Literal["all", "hem"]
    image: str
    cell: str


def parse_cnmc_subject(filename: str | os.PathLike[str]) -> CnmcName:
    """Subject id and label (plus image and cell numbers) from a C-NMC 2019 file name.

    Accepts a bare name or a path (only the last component is parsed).

    Raises:
        ValueError: the name does not follow `UID_<subject>_<image>_<cell>_<label>.bmp` or the
            label is not all/hem.
    """
    name = Path(filename).name
    match = _CNMC_NAME.match(name)
    if not match:
        raise ValueError(
            f"C-NMC file name {name!r} does not match UID_<subject>_<image>_<cell>_<label>.bmp "
            "(e.g. UID_11_10_1_all.bmp or UID_H10_43_1_hem.bmp); unlabelled test-set names "
            "such as 1.bmp carry no subject id"
        )
    label = match["label"].lower()
    if label not in ("all", "hem"):
        raise ValueError(
            f"C-NMC file name {name!r} has label {match['label']!r}; expected 'all' or 'hem'"
        )
    return CnmcName(
        subject=match["subject"],
        label="all" if label == "all" else "hem",
        image=match["image"],
        cell=match["cell"],
    )
