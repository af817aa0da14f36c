"""Stable file names for cells, so a breakpoint set on a cell's text hits its compiled code.

A frontend names a cell's file without asking the kernel: it hashes the cell's source with
the method and seed the kernel reported in ``debugInfo`` and wraps the hash in the reported
prefix and suffix.  ``dumpCell`` writes the source to that file, and the shell's compiler
gives the code object the same name, so debugpy matches breakpoints, stack frames and source.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

from IPython.core.compilerop import CachingCompiler

__all__ = ["HASH_METHOD", "HASH_SEED", "CellCompiler", "cell_file", "dump_cell", "murmur2"]

HASH_METHOD = "Murmur2"
HASH_SEED = 0xC70F6907
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(text: str, seed: int = HASH_SEED) -> int:
    """MurmurHash2 (32-bit) of the UTF-8 bytes of ``text``: JupyterLab computes the same."""
    data = text.encode("utf-8")
    length = len(data)
    h = (seed ^ length) & _MASK
    body = length & ~3
    for i in range(0, body, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        k = 0
        for j in range(tail - 1, -1, -1):
            k = (k << 8) | data[body + j]
        h = ((h ^ k) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def tmp_prefix() -> str:
    """Per-process directory of dumped cells, ending with a separator (``tmpFilePrefix``)."""
    return _prefix_for(os.getpid())


@functools.cache
def _prefix_for(pid: int) -> str:
    # Asked at every compile; keyed by pid so a forked process gets its own directory.
    return os.path.join(tempfile.gettempdir(), f"async_kernel_{pid}") + os.sep


TMP_SUFFIX = ".py"


def cell_file(code: str) -> str:
    """The file name of a cell whose source is ``code``."""
    return f"{tmp_prefix()}{murmur2(code)}{TMP_SUFFIX}"


def dump_cell(code: str) -> str:
    """Write ``code`` to its cell file (so debuggers can show it) and return the name."""
    path = Path(cell_file(code))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code, encoding="utf-8")
    return str(path)


class CellCompiler(CachingCompiler):
    """IPython's compiler with cells named by their hashed source instead of a counter."""

    def get_code_name(self, raw_code: str, transformed_code: str, number: int) -> str:
        return cell_file(raw_code)
