"""Safe extraction of downloaded .zip and .tar(.gz/.bz2/.xz) archives.

`safe_extract(archive, dest, max_total_bytes=...)` either produces the complete, checked content
of `archive` at `dest`, or raises and leaves nothing behind:

1. The member list is read and checked before anything is written: no absolute paths or drive
   letters, no `..` components, no symlinks or hardlinks, no device files, FIFOs or sockets, no
   duplicate names, at most `max_members` members, and a declared unpacked total within
   `max_total_bytes` (and within the free disk space).
2. Members are streamed into a fresh temporary folder beside `dest`, counting real bytes, because
   headers can lie: exceeding `max_total_bytes` (or a member exceeding its declared size) aborts.
3. The temporary folder is renamed onto `dest` in one `os.replace`. Any failure (corrupt or
   truncated archive, limit exceeded, disk full) removes the temporary folder.

Archive types are recognised by content (zip end-of-central-directory record, tar headers with
gzip/bzip2/xz auto-detection), not by file name.
"""

from __future__ import annotations

import logging
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

log = logging.getLogger(__name__)

DEFAULT_MAX_MEMBERS = 200_000
_COPY_CHUNK = 1 << 20

# What a damaged archive raises while it is listed or read (gzip.BadGzipFile is an OSError).
_CORRUPTION_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,  # unsupported zip compression method
)


class ArchiveError(RuntimeError):
    """An archive that cannot be extracted; the message names the archive file."""


class UnsafeArchiveError(ArchiveError):
    """A member would escape the destination, or is a link / device / FIFO."""


class ArchiveTooLargeError(ArchiveError):
    """Too many members, or more unpacked bytes than allowed (declared or actual)."""


class CorruptArchiveError(ArchiveError):
    """The archive is truncated, damaged, or not a zip / tar archive at all."""


@dataclass(frozen=True)
class _Member:
    """One archive entry, reduced to what extraction needs."""

    name: str  # normalised relative POSIX path
    is_dir: bool
    size: int  # declared uncompressed size
    handle: object  # zipfile.ZipInfo or tarfile.TarInfo


def _safe_relative(raw_name: str, archive: Path) -> str:
    """The member name as a clean relative POSIX path, or UnsafeArchiveError."""
    if not raw_name or "\x00" in raw_name:
        raise UnsafeArchiveError(f"{archive}: member with an empty or NUL-containing name")
    name = raw_name.replace("\\", "/")
    if name.startswith("/") or (len(name) >= 2 and name[1] == ":" and name[0].isalpha()):
        raise UnsafeArchiveError(
            f"{archive}: member {raw_name!r} has an absolute path; refusing to extract"
        )
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(
            f"{archive}: member {raw_name!r} contains '..' and would escape the destination; "
            "refusing to extract"
        )
    if not parts:
        raise UnsafeArchiveError(f"{archive}: member {raw_name!r} has no usable name")
    return str(PurePosixPath(*parts))


def _zip_members(zf: zipfile.ZipFile, archive: Path) -> list[_Member]:
    members: list[_Member] = []
    for info in zf.infolist():
        name = _safe_relative(info.filename, archive)
        mode = info.external_attr >> 16
        file_type = stat.S_IFMT(mode)
        if info.create_system == 3 and file_type and file_type not in (stat.S_IFREG, stat.S_IFDIR):
            kind = "a symlink" if stat.S_ISLNK(mode) else "a special file (device/FIFO/socket)"
            raise UnsafeArchiveError(
                f"{archive}: member {info.filename!r} is {kind}; refusing to extract"
            )
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{archive}: member {info.filename!r} is encrypted")
        members.append(_Member(name, info.is_dir(), 0 if info.is_dir() else info.file_size, info))
    return members


def _check_tar_end(tf: tarfile.TarFile, archive: Path) -> None:
    """tarfile stops quietly at a missing or cut header, so a tar cut at a member boundary would
    look complete: require the end-of-archive marker (a zero block) where the listing stopped."""
    fileobj = tf.fileobj
    assert fileobj is not None
    fileobj.seek(tf.offset)
    if fileobj.read(tarfile.BLOCKSIZE) != tarfile.NUL * tarfile.BLOCKSIZE:
        raise CorruptArchiveError(
            f"{archive} is corrupt or truncated: the tar end-of-archive marker is missing after "
            f"{len(tf.getmembers())} members; nothing was extracted. Delete it and download it "
            "again."
        )


def _tar_members(tf: tarfile.TarFile, archive: Path) -> list[_Member]:
    members: list[_Member] = []
    infos = tf.getmembers()
    _check_tar_end(tf, archive)
    for info in infos:
        name = _safe_relative(info.name, archive)
        if info.issym() or info.islnk():
            kind = "symlink" if info.issym() else "hardlink"
            raise UnsafeArchiveError(
                f"{archive}: member {info.name!r} is a {kind} (to {info.linkname!r}); "
                "refusing to extract"
            )
        if info.ischr() or info.isblk() or info.isfifo():
            raise UnsafeArchiveError(
                f"{archive}: member {info.name!r} is a device file or FIFO; refusing to extract"
            )
        if not (info.isreg() or info.isdir()):
            raise UnsafeArchiveError(
                f"{archive}: member {info.name!r} has unsupported type {info.type!r}"
            )
        members.append(_Member(name, info.isdir(), 0 if info.isdir() else info.size, info))
    return members


def _check_members(
    members: list[_Member], archive: Path, max_total_bytes: int, max_members: int
) -> int:
    if len(members) > max_members:
        raise ArchiveTooLargeError(
            f"{archive} has {len(members):,} members, more than the limit of {max_members:,}; "
            "refusing to extract (raise max_members if this archive is trusted)"
        )
    files: set[str] = set()
    dirs: set[str] = set()
    for member in members:
        if member.is_dir:
            dirs.add(member.name)
            continue
        if member.name in files:
            raise UnsafeArchiveError(f"{archive}: member {member.name!r} appears more than once")
        files.add(member.name)
    for name in files:
        parents = {str(p) for p in PurePosixPath(name).parents}
        if name in dirs or parents & files:
            raise UnsafeArchiveError(f"{archive}: {name!r} is both a file and a folder")
    declared = sum(m.size for m in members)
    if declared > max_total_bytes:
        raise ArchiveTooLargeError(
            f"{archive} declares {declared:,} unpacked bytes, more than the limit of "
            f"{max_total_bytes:,}; refusing to extract (nothing was written)"
        )
    return declared


@contextmanager
def _open_archive(
    archive: Path,
) -> Iterator[tuple[list[_Member], Callable[[_Member], IO[bytes]]]]:
    """(checked member list, opener of a member's byte stream) for a zip or tar archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:

            def open_zip(member: _Member) -> IO[bytes]:
                assert isinstance(member.handle, zipfile.ZipInfo)
                return zf.open(member.handle)

            yield _zip_members(zf, archive), open_zip
        return
    try:
        tf = tarfile.open(archive, mode="r:*")  # noqa: SIM115 - closed by `with tf` below
    except tarfile.ReadError:
        kind = "zip" if archive.suffix.lower() == ".zip" else "zip or tar"
        raise CorruptArchiveError(
            f"{archive} is not a readable {kind} archive: it is corrupt or truncated (an "
            "interrupted download?). Delete it and download it again."
        ) from None
    with tf:

        def open_tar(member: _Member) -> IO[bytes]:
            assert isinstance(member.handle, tarfile.TarInfo)
            stream = tf.extractfile(member.handle)
            if stream is None:  # pragma: no cover - only for non-regular members
                raise CorruptArchiveError(f"{archive}: cannot read member {member.name!r}")
            return stream

        yield _tar_members(tf, archive), open_tar


def _copy_limited(
    source: IO[bytes], target: Path, member: _Member, budget: int, archive: Path
) -> int:
    """Copy one member, refusing to write more than its declared size or the remaining budget."""
    written = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as out:
        while block := source.read(_COPY_CHUNK):
            written += len(block)
            if written > budget:
                raise ArchiveTooLargeError(
                    f"{archive}: unpacked data exceeds the limit while extracting "
                    f"{member.name!r} (its header understated the size); extraction aborted"
                )
            if written > member.size:
                raise CorruptArchiveError(
                    f"{archive}: member {member.name!r} holds more than its declared "
                    f"{member.size:,} bytes; extraction aborted"
                )
            out.write(block)
    if written != member.size:
        raise CorruptArchiveError(
            f"{archive}: member {member.name!r} has {written:,} bytes, "
            f"{member.size:,} declared (truncated archive?)"
        )
    return written


def _prepare_destination(dest: Path, replace: bool, archive: Path) -> None:
    if dest.exists() and not dest.is_dir():
        raise ArchiveError(f"cannot extract {archive}: {dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not replace:
        raise ArchiveError(
            f"cannot extract {archive}: {dest} already exists and is not empty; remove it or "
            "pass replace=True"
        )


def safe_extract(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    max_total_bytes: int,
    max_members: int = DEFAULT_MAX_MEMBERS,
    replace: bool = False,
) -> list[Path]:
    """Extract `archive` (.zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz) into the folder `dest`.

    Args:
        archive: the archive file; its type is detected from its content.
        dest: the folder that will hold the members. It must not exist or be empty, unless
            `replace` is True, in which case an existing folder is swapped out only after the
            new content is complete.
        max_total_bytes: the most unpacked bytes allowed, checked against the headers before
            writing and against the real bytes while writing.
        max_members: the most entries (files and folders) allowed.
        replace: allow replacing a non-empty `dest`.

    Returns:
        The extracted regular files under `dest`, in archive order.

    Raises:
        UnsafeArchiveError: a path-traversal, absolute, link, device or duplicate member.
        ArchiveTooLargeError: too many members or too many bytes (declared or actual).
        CorruptArchiveError: truncated, damaged or unrecognised archive.
        ArchiveError: the destination is unusable, or another extraction problem.
    """
    archive = Path(archive)
    dest = Path(dest)
    if max_total_bytes < 0 or max_members < 1:
        raise ValueError("max_total_bytes must be >= 0 and max_members >= 1")
    if not archive.is_file():
        raise ArchiveError(f"archive {archive} does not exist or is not a file")
    _prepare_destination(dest, replace, archive)
    dest.parent.mkdir(parents=True, exist_ok=True)

    staging: Path | None = None
    try:
        with _open_archive(archive) as (members, open_member):
            declared = _check_members(members, archive, max_total_bytes, max_members)
            free = shutil.disk_usage(dest.parent).free
            if declared > free:
                raise ArchiveError(
                    f"cannot extract {archive}: it unpacks to {declared:,} bytes but only "
                    f"{free:,} are free in {dest.parent}"
                )
            staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extract-", dir=dest.parent))
            staging.chmod(0o755)
            budget = max_total_bytes
            extracted: list[str] = []
            for member in members:
                target = staging.joinpath(*PurePosixPath(member.name).parts)
                if member.is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with open_member(member) as source:
                    budget -= _copy_limited(source, target, member, budget, archive)
                extracted.append(member.name)
        _move_into_place(staging, dest)
        staging = None
    except ArchiveError:
        raise
    except _CORRUPTION_ERRORS as exc:
        raise CorruptArchiveError(
            f"{archive} is corrupt or truncated ({type(exc).__name__}: {exc}); nothing was "
            "extracted. Delete it and download it again."
        ) from exc
    except OSError as exc:
        raise ArchiveError(f"extracting {archive} into {dest} failed: {exc}") from exc
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("extracted %d files from %s into %s", len(extracted), archive, dest)
    return [dest.joinpath(*PurePosixPath(name).parts) for name in extracted]


def _move_into_place(staging: Path, dest: Path) -> None:
    """Rename the complete staging folder onto `dest` (an old `dest` is removed afterwards)."""
    old: Path | None = None
    if dest.is_dir():
        if any(dest.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / dest.name)
        else:
            dest.rmdir()
    os.replace(staging, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def extract_all(
    archives: list[str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    *,
    max_total_bytes: int,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> list[Path]:
    """Extract several archives into one folder `dest`, all or nothing.

    The size limit covers all archives together. Two archives holding the same path is an
    error (nothing is silently overwritten). `dest` appears only once every archive is complete.
    """
    dest = Path(dest)
    _prepare_destination(dest, False, Path(archives[0]) if archives else dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.all-", dir=dest.parent))
    try:
        merged = staging / "merged"
        merged.mkdir()
        extracted: list[Path] = []
        budget = max_total_bytes
        for index, archive in enumerate(archives):
            part = staging / f"part-{index}"
            members = safe_extract(archive, part, max_total_bytes=budget, max_members=max_members)
            budget -= sum(m.stat().st_size for m in members)
            for member in members:
                rel = member.relative_to(part)
                target = merged / rel
                if target.exists():
                    raise UnsafeArchiveError(
                        f"{archive} and an earlier archive both contain {rel.as_posix()}; "
                        "refusing to overwrite it"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(member, target)
                extracted.append(dest / rel)
        merged.chmod(0o755)
        _move_into_place(merged, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return extracted
