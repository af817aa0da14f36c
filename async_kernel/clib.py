"""libc's functions called with the GIL held (``ctypes.PyDLL``).

For the few system calls the kernel makes where no other thread may slip in between: a
``print`` is several writes, and a call that let the GIL go in one of them handed the
interpreter to whichever thread wanted it, which printed into the middle of the line.  Each
call made this way never blocks (a zero timeout, a non-blocking descriptor), so holding the
GIL through it costs the other threads nothing.  ``transport/libzmq.py`` does the same for
libzmq's sends and receives, for the reasons measured there.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

__all__ = ["libc_function"]


def libc_function(name: str, restype: Any, argtypes: tuple[Any, ...] | None = None) -> Any | None:
    """libc's ``name`` as a ctypes function that keeps the GIL, or None where there is no
    such function to call (not POSIX).  Without ``argtypes`` the caller passes ready ctypes
    objects (checking arguments against declared types costs as much as the call)."""
    if os.name != "posix":
        return None
    try:
        function: Any = getattr(ctypes.PyDLL(None), name)
    except (OSError, AttributeError):  # pragma: no cover - no C library to load
        return None
    function.restype = restype
    if argtypes is not None:
        function.argtypes = argtypes
    return function
