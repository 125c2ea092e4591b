"""Tie a cached kernel's on-disk numba cache to the sources of the kernels it compiles in.

numba checks only the stamp of the file that defines a cached function; a change in a kernel it calls from
another module (compiled into the same machine code) would leave a stale cache in use. Calling
:func:`tie_cache_to_sources` before the kernel is first compiled or loaded adds a hash of those modules'
sources to the cache's stamp, so any change makes numba compile afresh.
"""

from __future__ import annotations

import hashlib
import inspect

_TIED: set[int] = set()


def tie_cache_to_sources(dispatcher, *modules) -> None:
    """Make ``dispatcher``'s disk cache stale whenever the source of any of ``modules`` changes."""
    if id(dispatcher) in _TIED:
        return
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if cache_file is None or not hasattr(cache_file, "_source_stamp"):
        return  # caching disabled, or a numba whose internals differ: its own stamp still applies
    h = hashlib.sha256()
    for m in modules:
        h.update(inspect.getsource(m).encode())
    cache_file._source_stamp = (cache_file._source_stamp, h.hexdigest())
    _TIED.add(id(dispatcher))
