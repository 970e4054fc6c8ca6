"""Order-preserving parallel map over many small items (images), streamed from disk."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from joblib import Parallel, delayed

T = TypeVar("T")
R = TypeVar("R")


def _run_chunk(func: Callable[[T], R], chunk: list[T]) -> list[R]:
    return [func(item) for item in chunk]


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def parallel_map(
    func: Callable[[T], R], items: Iterable[T], n_jobs: int = 1, chunk_size: int = 64
) -> Iterator[R]:
    """Yield func(item) for every item in input order; chunks keep process overhead low.

    `func` must be a picklable top-level callable (or functools.partial of one) when n_jobs > 1.
    """
    if n_jobs <= 1:
        for item in items:
            yield func(item)
        return
    runner = Parallel(n_jobs=n_jobs, return_as="generator", backend="loky")
    for results in runner(delayed(_run_chunk)(func, c) for c in _chunks(items, chunk_size)):
        yield from results
