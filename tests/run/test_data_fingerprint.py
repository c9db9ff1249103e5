"""The resume fingerprint of --data follows file contents, not only names and sizes."""

from pipeline.run.context import _data_fingerprint
from tests.conftest import write_images


def test_an_image_edited_in_place_with_the_same_size_changes_the_fingerprint(tmp_path):
    folder = write_images(tmp_path / "tiny", 4)
    before = _data_fingerprint(folder)
    assert _data_fingerprint(folder) == before  # stable for unchanged files
    image = folder / "img_001.png"
    content = bytearray(image.read_bytes())
    content[-20] ^= 0xFF  # one byte changed, same length
    image.write_bytes(bytes(content))
    assert image.stat().st_size == len(content)
    assert _data_fingerprint(folder) != before


def test_a_renamed_image_changes_the_fingerprint(tmp_path):
    folder = write_images(tmp_path / "tiny", 4)
    before = _data_fingerprint(folder)
    (folder / "img_001.png").rename(folder / "img_009.png")
    assert _data_fingerprint(folder) != before
