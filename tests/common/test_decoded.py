"""lib.common.decoded: the digests of image files known to decode, kept beside the images."""

from __future__ import annotations

import hashlib

from lib.common.decoded import DECODED_FILE, add_decoded, digest, known_to_decode, read_decoded
from lib.prepare.duplicates import file_digest


def test_digest_is_the_folds_stages_file_digest(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"\xff\xd8 some bytes \xff\xd9")
    assert digest(path.read_bytes()).hex() == file_digest(str(path))
    assert digest(b"x") == hashlib.blake2b(b"x", digest_size=16).digest()


def test_digests_are_added_sorted_and_once(tmp_path):
    a, b, c = digest(b"a"), digest(b"b"), digest(b"c")
    add_decoded(tmp_path, bytearray(b + a))
    add_decoded(tmp_path, bytearray(a + c))
    add_decoded(tmp_path, bytearray())  # nothing to add: the file stays as it is
    assert (tmp_path / DECODED_FILE).stat().st_size == 3 * 16
    assert [bytes(d) for d in read_decoded(tmp_path)] == sorted([a, b, c])
    assert not list(tmp_path.glob(".tmp*"))
    assert known_to_decode([b.hex(), digest(b"d").hex(), c.hex()], tmp_path).tolist() == [
        True,
        False,
        True,
    ]


def test_digests_ending_in_zero_bytes_keep_all_sixteen(tmp_path):
    zeros = bytes(15) + b"\x01"
    trailing = b"\x01" + bytes(15)
    add_decoded(tmp_path, bytearray(zeros + trailing))
    assert known_to_decode([zeros.hex(), trailing.hex(), bytes(16).hex()], tmp_path).tolist() == [
        True,
        True,
        False,
    ]


def test_no_file_or_a_damaged_one_knows_nothing(tmp_path):
    assert known_to_decode([digest(b"a").hex()], tmp_path).tolist() == [False]
    (tmp_path / DECODED_FILE).write_bytes(digest(b"a") + b"cut")  # not whole digests
    assert len(read_decoded(tmp_path)) == 0
    assert known_to_decode([digest(b"a").hex()], tmp_path).tolist() == [False]
    assert known_to_decode([], tmp_path).tolist() == []
