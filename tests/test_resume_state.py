"""The saved hash state is what makes a resumed upload cheap: these tests read real files through
a real FilesystemDriver and count the bytes the registry re-reads when a session is reopened."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

import pytest

from dockyard.registry import hashing
from dockyard.registry.uploads import _Sink, _state_key, decode_state, encode_state, upload_key
from dockyard.storage.filesystem import FilesystemDriver


class CountingDriver(FilesystemDriver):
    """The filesystem driver, counting how many bytes are read back from uploads."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reread = 0

    def reader(self, key: str, offset: int = 0) -> BinaryIO:
        f = super().reader(key, offset)
        if key.endswith("/data"):
            self.reread += (self.size(key) or 0) - offset
        return f


def _write(sink: _Sink, data: bytes) -> None:
    sink.write([data[i : i + 65536] for i in range(0, len(data), 65536)])


@pytest.mark.skipif(not hashing.resumable(), reason="libcrypto's SHA256_CTX is not available")
def test_reopened_session_continues_from_saved_state_without_rereading(tmp_path: Path) -> None:
    storage = CountingDriver(tmp_path)
    first, second = os.urandom(3 << 20), os.urandom(1 << 20)
    sink = _Sink(storage, "u1")
    _write(sink, first)
    sink.close()  # saves the state with the offset it covers
    reopened = _Sink(storage, "u1")
    assert storage.reread == 0
    assert reopened.offset == len(first)
    _write(reopened, second)
    reopened.close()
    assert reopened.hasher.hexdigest() == hashlib.sha256(first + second).hexdigest()


@pytest.mark.skipif(not hashing.resumable(), reason="libcrypto's SHA256_CTX is not available")
def test_bytes_after_the_saved_state_are_rehashed_only(tmp_path: Path) -> None:
    """A crash after data was written but before the state was saved: only the tail is re-read."""
    storage = CountingDriver(tmp_path)
    first, tail = os.urandom(2 << 20), os.urandom(300_000)
    sink = _Sink(storage, "u2")
    _write(sink, first)
    sink.close()
    with open(storage.root / upload_key("u2"), "ab") as f:  # bytes the killed server had written
        f.write(tail)
    reopened = _Sink(storage, "u2")
    assert storage.reread == len(tail)
    assert reopened.offset == len(first) + len(tail)
    assert reopened.hasher.hexdigest() == hashlib.sha256(first + tail).hexdigest()


@pytest.mark.parametrize("damage", ["missing", "torn", "flipped", "ahead-of-data"])
def test_damaged_state_falls_back_to_rehashing_everything(tmp_path: Path, damage: str) -> None:
    storage = CountingDriver(tmp_path)
    data = os.urandom(1 << 20)
    sink = _Sink(storage, "u3")
    _write(sink, data)
    sink.close()
    state_path = storage.root / _state_key("u3")
    blob = state_path.read_bytes()
    if damage == "missing":
        state_path.unlink()
    elif damage == "torn":
        state_path.write_bytes(blob[: len(blob) // 2])
    elif damage == "flipped":
        state_path.write_bytes(blob[:20] + bytes([blob[20] ^ 1]) + blob[21:])
    else:
        os.truncate(storage.root / upload_key("u3"), len(data) // 2)
        data = data[: len(data) // 2]
    reopened = _Sink(storage, "u3")
    assert storage.reread == len(data)
    assert reopened.hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_state_encoding_round_trips_and_rejects_garbage() -> None:
    state = os.urandom(112)
    assert decode_state(encode_state(12345, state)) == (12345, state)
    assert decode_state(None) is None
    assert decode_state(b"") is None
    assert decode_state(b"DYHS1" + b"\0" * 50) is None


def test_without_openssl_contexts_a_resumed_upload_is_rehashed_from_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback the brief asks for: where libcrypto lacks SHA256_CTX, hashlib is used, no state
    is saved, and a reopened session re-reads its bytes: slower, never wrong."""
    monkeypatch.setattr(hashing, "_LIB", None)
    storage = CountingDriver(tmp_path)
    first, second = os.urandom(1 << 20), os.urandom(12345)
    sink = _Sink(storage, "u4")
    assert isinstance(sink.hasher, hashing.HashlibHasher)
    _write(sink, first)
    sink.close()
    assert not (storage.root / _state_key("u4")).exists()
    reopened = _Sink(storage, "u4")
    assert storage.reread == len(first)
    _write(reopened, second)
    assert reopened.hasher.hexdigest() == hashlib.sha256(first + second).hexdigest()
    reopened.close()
