import pytest
from PIL import Image

from pipeline.core.errors import UsageError
from pipeline.data.tiny_set import (
    Preprocessing,
    augmented_views,
    eval_tensors,
    load_image_folder,
    split_holdout,
)
from tests.conftest import write_images


def test_unreadable_and_non_image_files_are_skipped_and_counted(tmp_path):
    folder = write_images(tmp_path / "imgs", 5)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("hello")
    tiny = load_image_folder(folder, 32)
    assert len(tiny) == 5
    assert tiny.summary()["skipped"] == {"unreadable": 1, "not an image file": 1}


def test_missing_empty_and_unusable_folders_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_image_folder(tmp_path / "nope", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="too few usable images"):
        load_image_folder(tmp_path / "empty", 32)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_text("garbage")
    with pytest.raises(UsageError, match="0 readable images"):
        load_image_folder(tmp_path / "junk", 32)
    (tmp_path / "file.png").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        load_image_folder(tmp_path / "file.png", 32)


def test_imagefolder_layout_gives_labels(tmp_path):
    numeric = load_image_folder(write_images(tmp_path / "n", 6, classes=3), 32)
    assert sorted(set(numeric.labels)) == [0, 1, 2]
    named = tmp_path / "named"
    for cls in ("dog", "cat"):
        (named / cls).mkdir(parents=True)
        Image.new("RGB", (20, 20)).save(named / cls / "x.png")
    assert load_image_folder(named, 32).labels == [0, 1]  # cat=0, dog=1 in sorted order
    assert load_image_folder(write_images(tmp_path / "flat", 3), 32).labels is None


def test_images_are_stored_small_and_transformed_to_the_resolution(tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    Image.new("RGB", (400, 300), (200, 10, 10)).save(folder / "a.png")
    Image.new("RGB", (300, 400), (10, 200, 10)).save(folder / "b.png")
    tiny = load_image_folder(folder, 32)
    assert min(tiny.images[0].size) == round(32 * 1.15)
    prep = Preprocessing(32, (0.5,) * 3, (0.5,) * 3)
    assert eval_tensors(tiny, prep).shape == (2, 3, 32, 32)
    views = augmented_views(tiny, prep, 5, 0.25, seed=0)
    assert views.shape == (5, 3, 32, 32)
    assert float(views.max()) <= 1.0 + 1e-6 and float(views.min()) >= -1.0 - 1e-6


def test_holdout_split_is_disjoint_and_seeded(image_folder):
    tiny = load_image_folder(image_folder, 32)
    train, held = split_holdout(tiny, 0.25, seed=3)
    assert len(held) == 4 and len(train) == 12
    assert not set(train.paths) & set(held.paths)
    assert split_holdout(tiny, 0.25, seed=3)[1].paths == held.paths
