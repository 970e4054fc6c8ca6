"""TCIA collection downloads resolved through tcia-utils' WordPress API, against a local server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from download_server import (
    DownloadServer,
    allow_only_loopback,
    build_zip,
    image_members,
    isolate_kaggle_env,
    serve,
)

from leukbench.archives import UnsafeArchiveError, extract_all
from leukbench.sources import (
    TCIA_WORDPRESS_BASE,
    SourceError,
    fetch,
    tcia_collection_files,
)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[DownloadServer]:
    allow_only_loopback(monkeypatch)
    isolate_kaggle_env(monkeypatch, tmp_path / "home")
    with serve() as srv:
        yield srv


def _cnmc_zip() -> bytes:
    return build_zip(
        image_members(
            [f"C-NMC_Leukemia/training_data/fold_0/all/UID_{i}_1_1_all.bmp" for i in (1, 2)]
        )
    )


def test_collection_downloads_resolve_and_fetch(server: DownloadServer, tmp_path: Path) -> None:
    data = _cnmc_zip()
    server.add_tcia_wordpress_collection(
        "C-NMC 2019",
        [
            ("C-NMC Leukemia (training and test)", "/files/C-NMC_Leukemia.zip", data),
            ("Challenge result spreadsheets", "/files/results.xlsx", b"xlsx"),
        ],
    )
    base = server.url("/api/v2/")
    entries = tcia_collection_files("C-NMC 2019", base_url=base, wanted=["Leukemia"])
    assert [e.filename for e in entries] == ["C-NMC_Leukemia.zip"]
    assert entries[0].url == server.url("/files/C-NMC_Leukemia.zip")
    assert entries[0].size is None  # the API's sizes are rounded, never used to verify
    path = fetch(entries[0], tmp_path, progress=False)
    assert path.read_bytes() == data

    from tcia_utils import wordpress  # the temporary base-URL override was undone

    assert wordpress.base_url == TCIA_WORDPRESS_BASE
    every = tcia_collection_files("c-nmc 2019", base_url=base)  # case is ignored
    assert [e.filename for e in every] == ["C-NMC_Leukemia.zip", "results.xlsx"]


def test_unknown_collection_names_what_was_found(server: DownloadServer) -> None:
    server.add_tcia_wordpress_collection("C-NMC 2019", [("x", "/files/x.zip", b"zip")])
    with pytest.raises(SourceError, match="no collection 'C-NMC 2020'"):
        tcia_collection_files("C-NMC 2020", base_url=server.url("/api/v2/"))


def test_aspera_only_download_says_to_fetch_it_by_hand(server: DownloadServer) -> None:
    server.add_tcia_wordpress_collection(
        "AML-Cytomorphology_LMU", [("Images (TIFF)", "/files/none.zip", None)]
    )
    with pytest.raises(SourceError, match=r"IBM Aspera.*source: local"):
        tcia_collection_files("AML-Cytomorphology_LMU", base_url=server.url("/api/v2/"))


def test_unmatched_download_filter_lists_the_downloads(server: DownloadServer) -> None:
    server.add_tcia_wordpress_collection("C-NMC 2019", [("Images", "/files/i.zip", b"zip")])
    with pytest.raises(SourceError, match=r"matches \['Masks'\].*Images"):
        tcia_collection_files("C-NMC 2019", base_url=server.url("/api/v2/"), wanted=["Masks"])


def test_api_failure_is_a_clear_error(server: DownloadServer) -> None:
    with pytest.raises(SourceError, match="did not answer"):
        tcia_collection_files("C-NMC 2019", base_url=server.url("/missing-api/"))


def _zip_file(tmp_path: Path, name: str, members: list[str]) -> Path:
    path = tmp_path / name
    path.write_bytes(build_zip(image_members(members)))
    return path


def test_extract_all_merges_archives_atomically(tmp_path: Path) -> None:
    first = _zip_file(tmp_path, "a.zip", ["data/A/1.png", "data/A/2.png"])
    second = _zip_file(tmp_path, "b.zip", ["data/B/1.png"])
    files = extract_all([first, second], tmp_path / "out", max_total_bytes=10**7)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in files) == [
        "data/A/1.png",
        "data/A/2.png",
        "data/B/1.png",
    ]
    assert all(p.is_file() for p in files)


def test_extract_all_refuses_overlapping_archives_and_leaves_nothing(tmp_path: Path) -> None:
    first = _zip_file(tmp_path, "a.zip", ["data/A/1.png"])
    second = _zip_file(tmp_path, "b.zip", ["data/A/1.png"])
    with pytest.raises(UnsafeArchiveError, match=r"both contain data/A/1\.png"):
        extract_all([first, second], tmp_path / "out", max_total_bytes=10**7)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_extract_all_size_limit_covers_every_archive(tmp_path: Path) -> None:
    first = _zip_file(tmp_path, "a.zip", ["A/1.png"])
    second = _zip_file(tmp_path, "b.zip", ["B/1.png"])
    size = len(image_members(["A/1.png"])["A/1.png"])
    from leukbench.archives import ArchiveTooLargeError

    with pytest.raises(ArchiveTooLargeError):
        extract_all([first, second], tmp_path / "out", max_total_bytes=size + 1)
    assert not (tmp_path / "out").exists()
