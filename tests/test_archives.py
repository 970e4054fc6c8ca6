"""safe_extract(): complete and checked, or nothing at all."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from download_server import build_tar, build_zip, image_members

from leukbench.archives import (
    ArchiveError,
    ArchiveTooLargeError,
    CorruptArchiveError,
    UnsafeArchiveError,
    _copy_limited,
    _Member,
    safe_extract,
)

NAMES = [
    f"{v}/{c}/{c}-{i:03d}.png" for v in ("Original", "Segmented") for c in "AB" for i in (0, 1)
]
LIMIT = 10_000_000
Builder = Callable[[Mapping[str, bytes]], bytes]


def tree(root: Path) -> set[str]:
    """Every path under `root` (relative), folders included."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def without_end_marker(tar: bytes) -> bytes:
    """A plain tar cut right after its last member's padded data: every header and body is
    whole, only the end-of-archive zero blocks are missing."""
    body = tar.rstrip(b"\0")
    return body + b"\0" * (-len(body) % tarfile.BLOCKSIZE)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def tar_with(entries: list[tarfile.TarInfo], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tf:  # type: ignore[call-overload]
        for info in entries:
            data = b"x" * info.size if info.isreg() else None
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def reg(name: str, size: int = 3) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def assert_nothing_written(tmp_path: Path, archive: Path, dest: Path) -> None:
    """Only the archive is left: no dest, no staging folder, nothing outside dest."""
    assert not dest.exists()
    assert tree(tmp_path) == {archive.name}


@pytest.mark.parametrize(
    ("suffix", "builder"),
    [
        (".zip", build_zip),
        (".tar.gz", lambda m: build_tar(m, "w:gz")),
        (".tar.bz2", lambda m: build_tar(m, "w:bz2")),
        (".tar.xz", lambda m: build_tar(m, "w:xz")),
        (".tar", lambda m: build_tar(m, "w")),
    ],
)
def test_extracts_every_supported_format(tmp_path: Path, suffix: str, builder: Builder) -> None:
    members = image_members(NAMES)
    archive = write(tmp_path, "cells" + suffix, builder(members))
    dest = tmp_path / "out" / "cells"

    files = safe_extract(archive, dest, max_total_bytes=LIMIT)

    assert files == [dest / name for name in NAMES]
    for name, data in members.items():
        assert (dest / name).read_bytes() == data
    assert sorted(p.name for p in dest.parent.iterdir()) == ["cells"]  # no staging left


def test_rejects_parent_traversal_in_zip(tmp_path: Path) -> None:
    archive = write(tmp_path, "evil.zip", build_zip({"ok.txt": b"ok", "../evil.txt": b"pwned"}))
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=r"'\.\./evil\.txt'.*escape"):
        safe_extract(archive, dest, max_total_bytes=LIMIT)
    assert_nothing_written(tmp_path, archive, dest)


@pytest.mark.parametrize("name", ["/tmp/evil.txt", "C:/evil.txt", "\\\\server\\evil.txt"])
def test_rejects_absolute_paths_in_zip(tmp_path: Path, name: str) -> None:
    archive = write(tmp_path, "evil.zip", build_zip({"ok.txt": b"ok", name: b"pwned"}))
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="absolute"):
        safe_extract(archive, dest, max_total_bytes=LIMIT)
    assert_nothing_written(tmp_path, archive, dest)


@pytest.mark.parametrize("name", ["a/../../evil.txt", "/etc/evil.txt"])
def test_rejects_traversal_and_absolute_paths_in_tar(tmp_path: Path, name: str) -> None:
    archive = write(tmp_path, "evil.tar.gz", tar_with([reg("ok.txt"), reg(name)]))
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="refusing to extract"):
        safe_extract(archive, dest, max_total_bytes=LIMIT)
    assert_nothing_written(tmp_path, archive, dest)


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        (special("link", tarfile.SYMTYPE, "/etc/passwd"), "symlink"),
        (special("hard", tarfile.LNKTYPE, "ok.txt"), "hardlink"),
        (special("fifo", tarfile.FIFOTYPE), "device file or FIFO"),
        (special("tty", tarfile.CHRTYPE), "device file or FIFO"),
        (special("disk", tarfile.BLKTYPE), "device file or FIFO"),
    ],
)
def test_rejects_links_and_special_files_in_tar(
    tmp_path: Path, entry: tarfile.TarInfo, fragment: str
) -> None:
    archive = write(tmp_path, "evil.tar", tar_with([reg("ok.txt"), entry], mode="w"))
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=fragment):
        safe_extract(archive, dest, max_total_bytes=LIMIT)
    assert_nothing_written(tmp_path, archive, dest)


def test_rejects_symlink_in_zip(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ok.txt", b"ok")
        link = zipfile.ZipInfo("link")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "../../etc/passwd")
    archive = write(tmp_path, "evil.zip", buffer.getvalue())
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        safe_extract(archive, dest, max_total_bytes=LIMIT)
    assert_nothing_written(tmp_path, archive, dest)


def test_rejects_duplicate_members(tmp_path: Path) -> None:
    archive = write(tmp_path, "dup.tar", tar_with([reg("a.txt"), reg("./a.txt")], mode="w"))
    with pytest.raises(UnsafeArchiveError, match="more than once"):
        safe_extract(archive, tmp_path / "out", max_total_bytes=LIMIT)


def test_refuses_oversize_archive_before_writing(tmp_path: Path) -> None:
    members = image_members(NAMES)
    archive = write(tmp_path, "big.zip", build_zip(members))
    dest = tmp_path / "out"
    declared = sum(len(d) for d in members.values())

    with pytest.raises(ArchiveTooLargeError, match=f"declares {declared:,} unpacked bytes"):
        safe_extract(archive, dest, max_total_bytes=declared - 1)
    assert_nothing_written(tmp_path, archive, dest)


def test_refuses_too_many_members(tmp_path: Path) -> None:
    archive = write(tmp_path, "many.zip", build_zip(image_members(NAMES)))
    with pytest.raises(ArchiveTooLargeError, match="members"):
        safe_extract(archive, tmp_path / "out", max_total_bytes=LIMIT, max_members=3)


def test_streaming_limit_catches_lying_headers(tmp_path: Path) -> None:
    target = tmp_path / "x"
    member = _Member("x", is_dir=False, size=10, handle=None)
    with pytest.raises(ArchiveTooLargeError, match="exceeds the limit"):
        _copy_limited(io.BytesIO(b"y" * 10), target, member, budget=5, archive=Path("a.zip"))
    target.unlink()
    with pytest.raises(CorruptArchiveError, match="more than its declared"):
        _copy_limited(io.BytesIO(b"y" * 11), target, member, budget=100, archive=Path("a.zip"))
    target.unlink()
    with pytest.raises(CorruptArchiveError, match="truncated"):
        _copy_limited(io.BytesIO(b"y" * 9), target, member, budget=100, archive=Path("a.zip"))


@pytest.mark.parametrize(
    ("name", "builder", "keep"),
    [
        ("cells.zip", build_zip, 0.6),
        ("cells.tar.gz", lambda m: build_tar(m, "w:gz"), 0.6),
        ("cells.tar.xz", lambda m: build_tar(m, "w:xz"), 0.6),
        ("cells.tar", lambda m: build_tar(m, "w"), 0.5),
        ("cells-cut-in-data.tar", lambda m: build_tar(m, "w"), 0.3),
        ("cells-cut-at-member-boundary.tar", lambda m: without_end_marker(build_tar(m, "w")), 1),
    ],
)
def test_truncated_archive_is_a_clear_error_with_no_output(
    tmp_path: Path, name: str, builder: Builder, keep: float
) -> None:
    data = builder(image_members(NAMES))
    archive = write(tmp_path, name, data[: int(len(data) * keep)])
    dest = tmp_path / "out"

    with pytest.raises(CorruptArchiveError) as err:
        safe_extract(archive, dest, max_total_bytes=LIMIT)

    assert str(archive) in str(err.value)
    assert "corrupt or truncated" in str(err.value)
    assert_nothing_written(tmp_path, archive, dest)


def test_damaged_zip_member_removes_partial_output(tmp_path: Path) -> None:
    members = {"a.bin": b"a" * 5000, "b.bin": bytes(range(256)) * 40}
    data = bytearray(build_zip(members))
    offset = data.index(b"b.bin") + 40  # inside b.bin's compressed data
    data[offset : offset + 16] = b"\xff" * 16
    archive = write(tmp_path, "damaged.zip", bytes(data))
    dest = tmp_path / "out"

    with pytest.raises(CorruptArchiveError, match=r"damaged\.zip"):
        safe_extract(archive, dest, max_total_bytes=LIMIT)
    assert_nothing_written(tmp_path, archive, dest)  # a.bin was extracted, then removed


def test_not_an_archive(tmp_path: Path) -> None:
    archive = write(tmp_path, "page.zip", b"<html>Please sign in</html>")
    with pytest.raises(CorruptArchiveError, match="not a readable zip archive"):
        safe_extract(archive, tmp_path / "out", max_total_bytes=LIMIT)


def test_existing_destination_needs_replace(tmp_path: Path) -> None:
    archive = write(tmp_path, "cells.zip", build_zip({"new.txt": b"new"}))
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("old")

    with pytest.raises(ArchiveError, match="not empty"):
        safe_extract(archive, dest, max_total_bytes=LIMIT)
    assert tree(dest) == {"old.txt"}

    safe_extract(archive, dest, max_total_bytes=LIMIT, replace=True)
    assert tree(dest) == {"new.txt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.zip", "out"]


def test_empty_existing_destination_is_used(tmp_path: Path) -> None:
    archive = write(tmp_path, "cells.zip", build_zip({"d/new.txt": b"new"}))
    dest = tmp_path / "out"
    dest.mkdir()
    assert safe_extract(archive, dest, max_total_bytes=LIMIT) == [dest / "d" / "new.txt"]


def test_missing_archive(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="does not exist"):
        safe_extract(tmp_path / "nope.zip", tmp_path / "out", max_total_bytes=LIMIT)
