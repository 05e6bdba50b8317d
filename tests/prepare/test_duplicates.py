import pandas as pd

from lib.prepare.duplicates import content_hashes, file_digest, group_ids
from tests.conftest import write_image


def test_identical_bytes_share_a_hash_and_a_group(tmp_path):
    a = write_image(tmp_path / "a.png", seed=1)
    b = write_image(tmp_path / "b.png", seed=2)
    copy = tmp_path / "copy.png"
    copy.write_bytes(a.read_bytes())
    hashes = content_hashes([a, b, copy], workers=2)
    assert hashes[0] == hashes[2] != hashes[1]
    assert hashes[0] == file_digest(str(a))
    assert group_ids(pd.Series(hashes)).tolist() == [0, 1, 0]
