"""nftables without a process: the few calls of ``libnftables`` berth needs, over ctypes.

Running ``nft -f -`` costs a fork and an exec, about 4 ms here, on every published port
of every container start and stop; the library the ``nft`` command is built on does the
same work in-process in about 0.3 ms. :func:`run` takes the same script text and the
options ``nft`` would get (``-c``: check only, ``-j``: JSON output) and reports failure
with ``nft``'s own error text, so callers read errors the same either way.

Each call makes its own context (the library keeps no state between calls), inside the
network namespace asked for (:func:`runners.net.nsthread.in_netns`: the netlink socket
belongs to the namespace it is opened in). Calls are serialised with a lock: the parser
of some library versions is not re-entrant. :func:`available` is False where the library
cannot be loaded; :mod:`runners.net.nftables` then runs the ``nft`` command.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from dataclasses import dataclass

from runners.net.names import netns_path
from runners.net.nsthread import in_netns

LIBRARY = "libnftables.so.1"
# <nftables/libnftables.h>
OUTPUT_JSON = 1 << 4

_lock = threading.Lock()


@dataclass(frozen=True)
class Outcome:
    """What one library call returned: ``nft``'s exit status, output and error text."""

    returncode: int
    stdout: str
    stderr: str


@functools.cache
def _library() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL(LIBRARY, use_errno=True)
    except OSError:
        return None
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_free.restype = None
    lib.nft_ctx_set_dry_run.argtypes = [ctypes.c_void_p, ctypes.c_bool]
    lib.nft_ctx_set_dry_run.restype = None
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.nft_ctx_output_set_flags.restype = None
    for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
        getattr(lib, name).restype = ctypes.c_int
    for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
        getattr(lib, name).restype = ctypes.c_char_p
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    return lib


def available() -> bool:
    """True when ``libnftables`` can be loaded here."""
    return _library() is not None


def run(
    script: str, *, netns: str | None = None, check_only: bool = False, json_output: bool = False
) -> Outcome:
    """Run the nft ``script`` (as ``nft [-c] [-j] -f -`` would) inside ``netns``.

    ``netns`` is a namespace name (``/run/netns/NAME``) or a path; None: this one.
    """
    lib = _library()
    if lib is None:
        raise OSError(f"{LIBRARY} cannot be loaded")
    if "\0" in script:
        return Outcome(1, "", "Error: the script contains a NUL byte")
    where = None if netns is None else netns_path(netns)
    return in_netns(where, lambda: _run(lib, script.encode(), check_only, json_output))


def _run(lib: ctypes.CDLL, script: bytes, check_only: bool, json_output: bool) -> Outcome:
    with _lock:
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            return Outcome(1, "", "Error: nft_ctx_new failed (out of memory?)")
        try:
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            if check_only:
                lib.nft_ctx_set_dry_run(ctx, True)
            if json_output:
                lib.nft_ctx_output_set_flags(ctx, OUTPUT_JSON)
            code = lib.nft_run_cmd_from_buffer(ctx, script)
            out = lib.nft_ctx_get_output_buffer(ctx) or b""
            err = lib.nft_ctx_get_error_buffer(ctx) or b""
        finally:
            lib.nft_ctx_free(ctx)
    return Outcome(1 if code else 0, out.decode(errors="replace"), err.decode(errors="replace"))
