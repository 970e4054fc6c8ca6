"""Source adapters: Kaggle endpoint, TCIA manifest and tcia-utils series, C-NMC file names."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from download_server import (
    DownloadServer,
    allow_only_loopback,
    build_tar,
    build_zip,
    image_members,
    isolate_kaggle_env,
    serve,
    sha256_hex,
)

from leukbench.archives import safe_extract
from leukbench.credentials import HOW_TO_FIX, CredentialsError, KaggleCredentials
from leukbench.download import HTTPStatusError, IntegrityError
from leukbench.sources import (
    KAGGLE_API_BASE,
    TCIA_NBIA_BASE,
    CnmcName,
    RemoteFile,
    SourceError,
    fetch,
    kaggle_dataset_files,
    parse_cnmc_subject,
    tcia_manifest_files,
    tcia_series_files,
)

KEY = "fedcba9876543210fedcba9876543210"
SLUG = "mehradaria/leukemia"
CLASSES = ["Benign", "Early", "Pre", "Pro"]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[DownloadServer]:
    allow_only_loopback(monkeypatch)
    isolate_kaggle_env(monkeypatch, tmp_path / "home")
    with serve() as srv:
        assert urlsplit(srv.base_url).hostname == "127.0.0.1"
        yield srv


@pytest.fixture
def kaggle_zip() -> bytes:
    names = [
        f"{v}/{c}/{c}-{i}.jpg" for v in ("Original", "Segmented") for c in CLASSES for i in (1, 2)
    ]
    return build_zip(image_members(names, fmt="JPEG"))


ALICE = KaggleCredentials(username="alice", key=KEY, source="test")


def kaggle_entry(
    server: DownloadServer, *, size: int | None = None, sha256: str | None = None
) -> RemoteFile:
    (entry,) = kaggle_dataset_files(SLUG, base_url=server.url("/api/v1"), size=size, sha256=sha256)
    assert entry.url.startswith("http://127.0.0.1:")
    return entry


# --------------------------------------------------------------------------------------------
# Kaggle
# --------------------------------------------------------------------------------------------


def test_kaggle_slug_resolves_to_the_public_download_endpoint() -> None:
    (entry,) = kaggle_dataset_files(SLUG)
    assert entry.url == f"{KAGGLE_API_BASE}/datasets/download/mehradaria/leukemia"
    assert KAGGLE_API_BASE == "https://www.kaggle.com/api/v1"
    assert (entry.filename, entry.auth) == ("leukemia.zip", "kaggle")
    (versioned,) = kaggle_dataset_files(SLUG + "/versions/3", base_url="http://127.0.0.1:1/api")
    assert versioned.url == (
        "http://127.0.0.1:1/api/datasets/download/mehradaria/leukemia?datasetVersionNumber=3"
    )


@pytest.mark.parametrize(
    "slug", ["leukemia", "a/b/c", "mehradaria/", "../x", "a b/c", "o/d/versions/x"]
)
def test_bad_kaggle_slug_is_explained(slug: str) -> None:
    with pytest.raises(SourceError, match="expected 'owner/dataset'"):
        kaggle_dataset_files(slug)


def test_fetch_kaggle_dataset_then_extract(
    server: DownloadServer, kaggle_zip: bytes, tmp_path: Path
) -> None:
    server.add_kaggle_dataset(SLUG, kaggle_zip, username="alice", key=KEY)
    entry = kaggle_entry(server, sha256=sha256_hex(kaggle_zip))

    archive = fetch(entry, tmp_path / "downloads", credentials=ALICE, progress=False)
    files = safe_extract(archive, tmp_path / "kaggle-all", max_total_bytes=10_000_000)

    assert archive.read_bytes() == kaggle_zip
    assert len(files) == 16
    assert (tmp_path / "kaggle-all" / "Original" / "Pro" / "Pro-2.jpg").is_file()
    endpoint, storage = server.records
    assert endpoint.status == 302 and endpoint.auth_scheme == "Basic"
    assert storage.path == "/kaggle-storage/mehradaria/leukemia.zip" and storage.status == 200

    # A second run needs neither the network nor credentials.
    assert fetch(entry, tmp_path / "downloads", progress=False) == archive
    assert server.request_count() == 2


def test_fetch_kaggle_with_bearer_token_and_resume(
    server: DownloadServer, kaggle_zip: bytes, tmp_path: Path
) -> None:
    token = "KGAT_0123456789abcdef"
    server.add_kaggle_dataset(SLUG, kaggle_zip, token=token)
    server.set_script(
        "/kaggle-storage/mehradaria/leukemia.zip", drop_after=len(kaggle_zip) // 3, drop_times=1
    )
    entry = kaggle_entry(server, size=len(kaggle_zip))

    archive = fetch(
        entry,
        tmp_path,
        credentials=KaggleCredentials(api_token=token, source="test"),
        sleep=lambda s: None,
        progress=False,
    )

    assert archive.read_bytes() == kaggle_zip
    ranges = [r.range for r in server.requests_for("/kaggle-storage/mehradaria/leukemia.zip")]
    assert ranges == [None, f"bytes={len(kaggle_zip) // 3}-"]
    assert {r.auth_scheme for r in server.requests_for("/api/v1/datasets/download/" + SLUG)} == {
        "Bearer"
    }


def test_fetch_kaggle_without_credentials_says_what_to_do(
    server: DownloadServer, kaggle_zip: bytes, tmp_path: Path
) -> None:
    server.add_kaggle_dataset(SLUG, kaggle_zip, username="alice", key=KEY)
    with pytest.raises(CredentialsError) as err:
        fetch(kaggle_entry(server), tmp_path, progress=False)
    assert str(err.value).endswith(HOW_TO_FIX)
    assert server.request_count() == 0


def test_rejected_kaggle_key_is_a_credentials_error_without_the_key(
    server: DownloadServer, kaggle_zip: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.add_kaggle_dataset(SLUG, kaggle_zip, username="alice", key="the-right-key-1234")
    with pytest.raises(CredentialsError) as err:
        fetch(kaggle_entry(server), tmp_path, credentials=ALICE, progress=False)

    assert "from test were rejected by the server (HTTP 401" in str(err.value)
    assert str(err.value).endswith(HOW_TO_FIX)
    assert KEY not in f"{err.value} {err.value!r}" and KEY not in caplog.text
    assert not (tmp_path / "leukemia.zip").exists()


def test_kaggle_licence_not_accepted_is_a_403_with_advice(
    server: DownloadServer, kaggle_zip: bytes, tmp_path: Path
) -> None:
    server.add_kaggle_dataset(SLUG, kaggle_zip, username="alice", key=KEY)
    server.set_script("/api/v1/datasets/download/" + SLUG, always_status=403)
    with pytest.raises(HTTPStatusError, match="licence") as err:
        fetch(kaggle_entry(server), tmp_path, credentials=ALICE, progress=False)
    assert err.value.status == 403 and KEY not in str(err.value)


# --------------------------------------------------------------------------------------------
# TCIA: manifest
# --------------------------------------------------------------------------------------------


def write_manifest(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data) if path.suffix == ".json" else _yaml(data))
    return path


def _yaml(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_tcia_manifest_entries_download_and_verify(
    server: DownloadServer, tmp_path: Path, suffix: str
) -> None:
    bmp_names = [f"fold_0/all/UID_{s}_{i}_1_all.bmp" for s in (11, 12) for i in (1, 2)]
    cnmc = build_zip(image_members(bmp_names, fmt="BMP"))
    mll = build_tar(image_members(["PML_RARA/P001/cell_001.tif"], fmt="TIFF"))
    server.add_file("/tcia/C-NMC_Leukemia.zip", cnmc)
    server.add_file("/tcia/mll.tar.gz", mll)
    manifest = write_manifest(
        tmp_path / f"tcia{suffix}",
        {
            "collections": {
                "C-NMC 2019": {
                    "base_url": "https://www.example.invalid/never-used",
                    "files": [
                        {"url": "C-NMC_Leukemia.zip", "size": len(cnmc), "sha256": sha256_hex(cnmc)}
                    ],
                },
                "AML-Cytomorphology_MLL_Helmholtz": {
                    "files": [
                        {
                            "url": server.url("/tcia/mll.tar.gz"),
                            "filename": "MLL_Helmholtz.tar.gz",
                            "md5": hashlib.md5(mll).hexdigest().upper(),
                            "unpacked_size": 123,
                        }
                    ]
                },
            }
        },
    )

    (entry,) = tcia_manifest_files(manifest, "C-NMC 2019", base_url=server.url("/tcia"))
    assert entry == RemoteFile(
        url=server.url("/tcia/C-NMC_Leukemia.zip"),
        filename="C-NMC_Leukemia.zip",
        size=len(cnmc),
        sha256=sha256_hex(cnmc),
        description="TCIA C-NMC 2019",
    )
    (mll_entry,) = tcia_manifest_files(manifest, "AML-Cytomorphology_MLL_Helmholtz")
    assert mll_entry.filename == "MLL_Helmholtz.tar.gz" and mll_entry.unpacked_size == 123

    out = tmp_path / "tcia"
    cnmc_path = fetch(entry, out, progress=False)
    mll_path = fetch(mll_entry, out, progress=False)
    assert cnmc_path.read_bytes() == cnmc and mll_path.read_bytes() == mll
    files = safe_extract(cnmc_path, tmp_path / "cnmc", max_total_bytes=10_000_000)
    assert [parse_cnmc_subject(f).subject for f in files] == ["11", "11", "12", "12"]

    fetch(entry, out, progress=False)  # verified: no request
    fetch(mll_entry, out, progress=False)
    assert server.request_count() == 2


def test_tcia_manifest_wrong_checksum_fails_verification(
    server: DownloadServer, tmp_path: Path
) -> None:
    server.add_file("/tcia/x.zip", b"new upstream content")
    manifest = {
        "collections": {"C": {"files": [{"url": server.url("/tcia/x.zip"), "sha256": "0" * 64}]}}
    }
    (entry,) = tcia_manifest_files(manifest, "C")
    with pytest.raises(IntegrityError, match="update the expected size/checksum"):
        fetch(entry, tmp_path, progress=False)


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ([{"url": "x.zip"}], "needs a base_url"),
        ([{"url": "ftp://127.0.0.1/x.zip"}], "must be http"),
        ([{"url": "http://127.0.0.1/x.zip", "filename": "../x.zip"}], "plain file name"),
        ([{"url": "http://127.0.0.1/a/x.zip"}, {"url": "http://127.0.0.1/b/x.zip"}], "twice"),
        ([{"url": "http://127.0.0.1/x.zip", "sha256": "abc"}], "sha256 must be a hex digest"),
        ([{"url": "http://127.0.0.1/x.zip", "size": -1}], "size must be a non-negative"),
        ([{"link": "http://127.0.0.1/x.zip"}], "'url' string"),
        ([], "empty"),
    ],
)
def test_bad_manifest_entries_are_explained(files: list[object], problem: str) -> None:
    with pytest.raises(SourceError, match=problem):
        tcia_manifest_files({"collections": {"C-NMC 2019": {"files": files}}}, "C-NMC 2019")


def test_manifest_without_the_collection(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.yaml", {"collections": {"Other": {"files": []}}})
    with pytest.raises(SourceError, match=r"no collection 'C-NMC 2019'.*TCIA page"):
        tcia_manifest_files(manifest, "C-NMC 2019")
    (tmp_path / "bad.yaml").write_text("collections: [")
    with pytest.raises(SourceError, match="not valid YAML"):
        tcia_manifest_files(tmp_path / "bad.yaml", "C-NMC 2019")
    with pytest.raises(SourceError, match="cannot read manifest"):
        tcia_manifest_files(tmp_path / "missing.yaml", "C-NMC 2019")


# --------------------------------------------------------------------------------------------
# TCIA: DICOM series through tcia-utils
# --------------------------------------------------------------------------------------------


def test_tcia_series_resolved_with_tcia_utils(server: DownloadServer, tmp_path: Path) -> None:
    pytest.importorskip("tcia_utils")
    series = {
        "1.2.840.1.1": build_zip({"1-1.dcm": b"DICM" * 64}),
        "1.2.840.1.2": build_zip({"1-1.dcm": b"DICM" * 32}),
    }
    server.add_tcia_collection("AML-Cytomorphology_LMU", series)
    root = logging.getLogger()
    handlers_before, level_before = list(root.handlers), root.level
    base = server.url("/nbia-api/services")

    entries = tcia_series_files("AML-Cytomorphology_LMU", base_url=base)

    assert [e.filename for e in entries] == ["1.2.840.1.1.zip", "1.2.840.1.2.zip"]
    assert entries[0].url == f"{base}/v4/getImage?NewFileNames=Yes&SeriesInstanceUID=1.2.840.1.1"
    assert entries[0].size is None  # NBIA builds the zip on the fly: size unknown
    assert entries[0].unpacked_size == 2 * len(series["1.2.840.1.1"])
    (query,) = server.requests_for("/nbia-api/services/v4/getSeries")
    assert query.query == "Collection=AML-Cytomorphology_LMU"

    from tcia_utils import nbia  # the temporary base-URL override was undone

    assert nbia.setApiUrl("getSeries").startswith("https://nbia.cancerimagingarchive.net/")
    assert TCIA_NBIA_BASE == "https://nbia.cancerimagingarchive.net/nbia-api/services"
    assert (list(root.handlers), root.level) == (handlers_before, level_before)

    path = fetch(entries[1], tmp_path, progress=False)
    assert path.read_bytes() == series["1.2.840.1.2"]


def test_sources_imports_tcia_utils_lazily_and_keeps_root_logging() -> None:
    """Importing leukbench.sources does not import tcia-utils (pandas, plotly, IPython, ...), and
    importing it on first use does not let its logging.basicConfig() touch the root logger."""
    pytest.importorskip("tcia_utils")
    code = (
        "import logging, sys\n"
        "import leukbench.sources as s\n"
        "assert 'tcia_utils' not in sys.modules and 'pandas' not in sys.modules\n"
        "s._import_nbia()\n"
        "assert 'tcia_utils.nbia' in sys.modules\n"
        "root = logging.getLogger()\n"
        "assert root.handlers == [] and root.level == logging.WARNING, root.handlers\n"
    )
    scripts = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
    env = {**os.environ, "PYTHONPATH": str(scripts)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_tcia_collection_without_dicom_series_points_to_the_manifest(
    server: DownloadServer,
) -> None:
    pytest.importorskip("tcia_utils")
    with pytest.raises(SourceError, match="manifest"):
        tcia_series_files("C-NMC 2019", base_url=server.url("/nbia-api/services"))
    server.add_file("/nbia-api/services/v4/getSeries", b"", always_status=500)
    with pytest.raises(SourceError, match="query failed"):
        tcia_series_files("C-NMC 2019", base_url=server.url("/nbia-api/services"))


# --------------------------------------------------------------------------------------------
# C-NMC 2019 file names
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("UID_11_10_1_all.bmp", CnmcName("11", "all", "10", "1")),
        ("UID_H10_43_1_hem.bmp", CnmcName("H10", "hem", "43", "1")),
        ("fold_0/hem/UID_H22_31_15_hem.BMP", CnmcName("H22", "hem", "31", "15")),
        (Path("fold_2/all/UID_7_2_3_ALL.bmp"), CnmcName("7", "all", "2", "3")),
    ],
)
def test_parse_cnmc_subject(name: str | Path, expected: CnmcName) -> None:
    assert parse_cnmc_subject(name) == expected


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("1.bmp", "does not match UID_<subject>_<image>_<cell>_<label>.bmp"),
        ("UID_11_10_1_all.png", "does not match"),
        ("UID_11_10_all.bmp", "does not match"),
        ("uid_11_10_1_all.bmp.part", "does not match"),
        ("UID_11_10_1_blast.bmp", "label 'blast'; expected 'all' or 'hem'"),
    ],
)
def test_parse_cnmc_subject_rejects_other_names(name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as err:
        parse_cnmc_subject(name)
    assert name.split("/")[-1] in str(err.value)
