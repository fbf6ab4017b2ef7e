"""Property tests for the small parsers every request goes through.

Valid input (generated from the grammars) must round-trip; anything else must raise
``RegistryError`` with the spec's code, never another exception; whatever is accepted must be
in the grammar (ASCII digits, no trailing newline) and in bounds.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dockyard.api.http import parse_content_range, parse_range
from dockyard.registry.digest import parse_digest
from dockyard.registry.errors import RegistryError
from dockyard.registry.names import validate_name, validate_tag

settings.register_profile("dockyard", deadline=None, max_examples=300)
settings.load_profile("dockyard")

# The spec's grammars, as full matches over ASCII.
NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_GRAMMAR = re.compile(rf"{NAME_COMPONENT}(?:/{NAME_COMPONENT})*", re.ASCII)
TAG_GRAMMAR = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", re.ASCII)
DIGEST_GRAMMAR = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}", re.ASCII)
CONTENT_RANGE_GRAMMAR = re.compile(r"(?:bytes[ =])?([0-9]+)-([0-9]+)(?:/(?:[0-9]+|\*))?", re.ASCII)
RANGE_GRAMMAR = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.ASCII)

HEX64 = "0123456789abcdef" * 4
ASCII_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=80)
ANY_TEXT = st.one_of(ASCII_TEXT, st.text(max_size=80))


def _raises(fn, code: str, status: int) -> RegistryError:  # noqa: ANN001, ANN202
    with pytest.raises(RegistryError) as info:
        fn()
    assert info.value.code == code, info.value
    assert info.value.status == status
    body = info.value.as_dict()
    assert body["code"] == code and isinstance(body["message"], str) and body["message"]
    return info.value


# -- digests ------------------------------------------------------------------------------------

algorithms = st.sampled_from([("sha256", 32), ("sha512", 64)])


@given(algorithms.flatmap(lambda a: st.tuples(st.just(a[0]), st.binary(min_size=a[1], max_size=a[1]))))
def test_digest_round_trip(pair):
    algorithm, raw = pair
    value = f"{algorithm}:{raw.hex()}"
    parsed = parse_digest(value)
    assert str(parsed) == value
    assert parsed.algorithm == algorithm and parsed.hex == raw.hex()


@given(ANY_TEXT)
@example(f"sha256:{HEX64}\n")
@example(f"sha256:{HEX64.upper()}")
@example(f"sha256:{HEX64[:-1]}")
@example(f"sha384:{HEX64}{HEX64[:32]}")
@example(f"sha256+b64:{HEX64}")
@example("")
def test_digest_accepts_only_the_grammar(value):
    try:
        parsed = parse_digest(value)
    except RegistryError as error:
        assert error.code == "DIGEST_INVALID" and error.status == 400
        assert not DIGEST_GRAMMAR.fullmatch(value)
        return
    assert DIGEST_GRAMMAR.fullmatch(value), repr(value)
    assert str(parsed) == value


@given(algorithms, st.integers(min_value=0, max_value=200), st.data())
def test_digest_with_wrong_length_is_invalid(algorithm, length, data):
    name, size = algorithm
    if length == size * 2:
        length += 1
    encoded = data.draw(st.text(alphabet="0123456789abcdef", min_size=length, max_size=length))
    _raises(lambda: parse_digest(f"{name}:{encoded}"), "DIGEST_INVALID", 400)


@given(
    st.from_regex(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*", fullmatch=True),
    st.text(alphabet="0123456789abcdef", min_size=1, max_size=130),
)
def test_digest_with_unknown_algorithm_is_invalid(algorithm, encoded):
    value = f"{algorithm}:{encoded}"
    if DIGEST_GRAMMAR.fullmatch(value):
        return
    _raises(lambda: parse_digest(value), "DIGEST_INVALID", 400)


# -- names and tags -----------------------------------------------------------------------------


@given(st.from_regex(NAME_GRAMMAR, fullmatch=True))
def test_valid_names_round_trip(name):
    if len(name) > 255:
        _raises(lambda: validate_name(name), "NAME_INVALID", 400)
    else:
        assert validate_name(name) == name


NAME_ALPHABET = st.text(alphabet="ab9._-/A \n:@%", max_size=40)


@given(st.one_of(NAME_ALPHABET, ANY_TEXT))
@example("library/ubuntu\n")
@example("a/../b")
@example("/a")
@example("a" * 256)
@example("a__b")
@example("a___b")
@example("a--b")
@example("a/b/")
def test_names_accepted_iff_in_grammar(name):
    valid = bool(NAME_GRAMMAR.fullmatch(name)) and len(name) <= 255
    try:
        result = validate_name(name)
    except RegistryError as error:
        assert error.code == "NAME_INVALID" and error.status == 400
        assert not valid, repr(name)
        return
    assert valid, repr(name)
    assert result == name
    assert ".." not in name and not name.startswith("/") and name == name.lower()


@given(st.from_regex(TAG_GRAMMAR, fullmatch=True))
def test_valid_tags_round_trip(tag):
    assert validate_tag(tag) == tag


@given(st.one_of(st.text(alphabet="aZ9_.-/: \n", max_size=140), ANY_TEXT))
@example("latest\n")
@example("-latest")
@example(".hidden")
@example("a" * 128)
@example("a" * 129)
@example("")
def test_tags_accepted_iff_in_grammar(tag):
    valid = bool(TAG_GRAMMAR.fullmatch(tag))
    try:
        result = validate_tag(tag)
    except RegistryError as error:
        assert error.code == "MANIFEST_INVALID" and error.status == 400
        assert not valid, repr(tag)
        return
    assert valid, repr(tag)
    assert result == tag


# -- Content-Range (upload chunks) --------------------------------------------------------------

offsets = st.integers(min_value=0, max_value=10**18)


@given(
    offsets,
    st.integers(min_value=0, max_value=10**12),
    st.sampled_from(["{}-{}", "bytes={}-{}", "bytes {}-{}/*", "bytes {}-{}/999"]),
)
def test_content_range_round_trip(start, length, form):
    end = start + length
    assert parse_content_range(form.format(start, end)) == (start, end)


@given(offsets, st.integers(min_value=1, max_value=10**6))
def test_content_range_backwards_is_invalid(end, back):
    start = end + back
    error = _raises(lambda: parse_content_range(f"{start}-{end}"), "RANGE_INVALID", 416)
    assert error.detail


@given(ANY_TEXT)
@example("\u0661-\u0662")
@example("0-9\n")
@example("0-")
@example("-5")
@example("bytes=0-5,7-9")
def test_content_range_accepts_only_the_grammar(value):
    try:
        start, end = parse_content_range(value)
    except RegistryError as error:
        assert error.code == "RANGE_INVALID" and error.status == 416
        return
    match = CONTENT_RANGE_GRAMMAR.fullmatch(value.strip())
    assert match, repr(value)
    assert (start, end) == (int(match[1]), int(match[2]))
    assert 0 <= start <= end


# -- Range (blob reads) -------------------------------------------------------------------------

sizes = st.integers(min_value=0, max_value=10**12)


@given(sizes, st.data())
def test_range_within_blob(size, data):
    if size == 0:
        return
    start = data.draw(st.integers(min_value=0, max_value=size - 1))
    end = data.draw(st.integers(min_value=start, max_value=size * 2))
    assert parse_range(f"bytes={start}-{end}", size) == (start, min(end, size - 1))
    assert parse_range(f"bytes={start}-", size) == (start, size - 1)


@given(st.integers(min_value=1, max_value=10**12), st.integers(min_value=1, max_value=10**13))
def test_suffix_range(size, length):
    assert parse_range(f"bytes=-{length}", size) == (max(size - length, 0), size - 1)


@given(sizes, st.integers(min_value=0, max_value=10**6), st.booleans())
@example(100, 0, True)  # bytes=100- on a 100-byte blob
@example(0, 0, True)  # bytes=0- on an empty blob
def test_range_starting_past_the_end_is_416(size, past, open_ended):
    start = size + past
    value = f"bytes={start}-" if open_ended else f"bytes={start}-{start + 10}"
    error = _raises(lambda: parse_range(value, size), "RANGE_INVALID", 416)
    assert error.headers.get("Content-Range") == f"bytes */{size}"


@given(sizes)
def test_empty_suffix_is_416(size):
    _raises(lambda: parse_range("bytes=-0", size), "RANGE_INVALID", 416)


@given(st.integers(min_value=1, max_value=10**6))
def test_any_range_of_an_empty_blob_is_416(length):
    _raises(lambda: parse_range(f"bytes=-{length}", 0), "RANGE_INVALID", 416)


@given(st.one_of(ANY_TEXT, st.from_regex(r"bytes=[0-9]{0,4}-[0-9]{0,4}", fullmatch=True)), sizes)
@example("bytes=\u0661-\u0662", 100)
@example("bytes=5-2", 100)
@example("bytes=0-1,3-4", 100)
@example("bytes=-", 100)
@example("items=0-1", 100)
def test_range_result_is_in_bounds(value, size):
    try:
        result = parse_range(value, size)
    except RegistryError as error:
        assert error.code == "RANGE_INVALID" and error.status == 416
        assert error.headers.get("Content-Range") == f"bytes */{size}"
        return
    if result is None:
        return
    start, end = result
    assert 0 <= start <= end < size, (value, size, result)
    assert RANGE_GRAMMAR.fullmatch(value.strip().replace(" ", "")), repr(value)
