"""Resumable SHA-256 / SHA-512 hashing.

An upload may be continued by another request, another process or (later) another replica, so
the running hash must be saved with the bytes received. ``hashlib`` objects cannot be
serialised; OpenSSL's low-level ``SHA256_CTX`` / ``SHA512_CTX`` are plain structs that can be
copied out and back in. That API is deprecated in OpenSSL 3 but still exported; where it is
missing we fall back to ``hashlib`` with no saved state, and the upload is re-hashed from
storage when it is resumed elsewhere.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from typing import Protocol

# Sizes of OpenSSL's public context structs (stable since 0.9.8): SHA256_CTX 112 bytes,
# SHA512_CTX 216 bytes. We allocate a little more so a future padding change cannot overrun.
_CTX_SIZES = {"sha256": 112, "sha512": 216}
_ALLOC = 256
_DIGEST_SIZES = {"sha256": 32, "sha512": 64}
_FUNCS = {"sha256": "SHA256", "sha512": "SHA512"}


class Hasher(Protocol):
    algorithm: str

    def update(self, data: bytes | memoryview) -> None: ...

    def hexdigest(self) -> str: ...

    def state(self) -> bytes | None: ...


def _load_libcrypto() -> ctypes.CDLL | None:
    for name in (ctypes.util.find_library("crypto"), "libcrypto.so.3", "libcrypto.so.1.1"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            for prefix in _FUNCS.values():
                for suffix in ("_Init", "_Update", "_Final"):
                    getattr(lib, prefix + suffix)
        except (OSError, AttributeError):
            continue
        for prefix in _FUNCS.values():
            getattr(lib, prefix + "_Init").argtypes = [ctypes.c_void_p]
            getattr(lib, prefix + "_Update").argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
            getattr(lib, prefix + "_Final").argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        return lib
    return None


_LIB = _load_libcrypto()


class OpenSSLHasher:
    """A hash whose whole state is a copyable struct; ctypes drops the GIL while it runs."""

    def __init__(self, algorithm: str, state: bytes | None = None) -> None:
        assert _LIB is not None
        self.algorithm = algorithm
        prefix = _FUNCS[algorithm]
        self._update = getattr(_LIB, prefix + "_Update")
        self._final = getattr(_LIB, prefix + "_Final")
        self._ctx = ctypes.create_string_buffer(_ALLOC)
        if state is None:
            getattr(_LIB, prefix + "_Init")(self._ctx)
        else:
            if len(state) != _CTX_SIZES[algorithm]:
                raise ValueError("hash state of the wrong size")
            ctypes.memmove(self._ctx, state, len(state))

    def update(self, data: bytes | memoryview) -> None:
        if not len(data):
            return
        buf = (ctypes.c_char * len(data)).from_buffer_copy(data) if isinstance(data, memoryview) else data
        self._update(self._ctx, buf, len(data))

    def hexdigest(self) -> str:
        # Finalise a copy so the running state stays usable.
        ctx = ctypes.create_string_buffer(self._ctx.raw, _ALLOC)
        out = ctypes.create_string_buffer(_DIGEST_SIZES[self.algorithm])
        self._final(out, ctx)
        return out.raw.hex()

    def state(self) -> bytes:
        return self._ctx.raw[: _CTX_SIZES[self.algorithm]]


class HashlibHasher:
    """Fallback when libcrypto's low-level API is unavailable: state cannot be saved."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._h = hashlib.new(algorithm)

    def update(self, data: bytes | memoryview) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def state(self) -> None:
        return None


def new_hasher(algorithm: str = "sha256", state: bytes | None = None) -> Hasher:
    """A fresh hasher, or one restored from ``state``; ValueError if the state cannot be used."""
    if _LIB is not None:
        return OpenSSLHasher(algorithm, state)
    if state is not None:
        raise ValueError("saved hash state needs OpenSSL's SHA contexts")
    return HashlibHasher(algorithm)


def resumable() -> bool:
    return _LIB is not None
