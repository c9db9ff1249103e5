"""A model's preprocessing and the user's overrides: parsed, checked, and applied by the image transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2 as T

from pipeline.core.errors import UsageError
from pipeline.data.tiny_set import Preprocessing
from pipeline.models import load_model
from pipeline.models.registry import IMAGENET_MEAN
from pipeline.models.preprocessing import preprocessing_record, with_preprocessing

TINY = "tests.tiny_models:tiny_resnet"


def test_overrides_replace_the_models_own_values_and_one_value_serves_three_channels():
    loaded = with_preprocessing(load_model(TINY, resolution=32), "0.5", "0.2,0.3,0.4", 1.0, "bicubic")
    assert preprocessing_record(loaded) == {"resolution": 32, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.3, 0.4],
                                            "crop_fraction": 1.0, "interpolation": "bicubic", "channels": "RGB"}
    untouched = with_preprocessing(load_model(TINY, resolution=32))
    assert untouched.mean == (0.485, 0.456, 0.406) and untouched.crop_fraction == 0.875
    assert untouched.interpolation == "bilinear"


@pytest.mark.parametrize("kwargs,fragment", [
    ({"mean": "0.5,0.5"}, "--mean '0.5,0.5' is not understood"),
    ({"mean": "grey"}, "one number or three"),
    ({"std": "0,1,1"}, "must be positive"),
    ({"crop_fraction": 0.0}, "must be in (0, 1]"),
    ({"crop_fraction": 1.2}, "must be in (0, 1]"),
    ({"interpolation": "lanczos"}, "choose one of: bilinear, bicubic, nearest"),
])
def test_bad_overrides_are_refused_with_the_fix(kwargs, fragment):
    with pytest.raises(UsageError) as caught:
        with_preprocessing(load_model(TINY, resolution=32), **kwargs)
    assert fragment in str(caught.value)


def _image(size: int = 64) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def test_the_evaluation_transform_applies_crop_fraction_filter_and_normalisation():
    image = _image()
    prep = Preprocessing(32, (0.5,) * 3, (0.25,) * 3, crop_fraction=0.5, interpolation="bicubic")
    expected = T.Compose([T.Resize(64, interpolation=T.InterpolationMode.BICUBIC, antialias=True), T.CenterCrop(32),
                          T.ToImage(), T.ToDtype(torch.float32, scale=True), T.Normalize((0.5,) * 3, (0.25,) * 3)])
    assert torch.equal(prep.eval_transform()(image), expected(image))
    whole = Preprocessing(32, (0.5,) * 3, (0.25,) * 3, crop_fraction=1.0).eval_transform()(image)
    assert not torch.equal(whole, expected(image))  # another crop fraction sees another part of the image
    assert prep.decode_resolution == 56 and whole.shape == (3, 32, 32)  # 32 * 0.875 / 0.5: stored at 56 * 1.15 >= 64


def test_preprocessing_of_a_loaded_model_carries_its_values():
    loaded = with_preprocessing(load_model(TINY, resolution=32), crop_fraction=0.95, interpolation="nearest")
    prep = Preprocessing.of(loaded)
    assert (prep.resolution, prep.crop_fraction, prep.interpolation) == (32, 0.95, "nearest")
    assert prep.mean == loaded.mean and prep.std == loaded.std


def two_channel_resnet():
    from tests.tiny_models import TinyResNet

    return TinyResNet(in_channels=2)


def test_a_grayscale_model_gets_one_value_per_channel_and_grey_tensors(tmp_path):
    from PIL import Image

    from pipeline.data.tiny_set import eval_tensors, load_image_folder

    loaded = with_preprocessing(load_model("tests.tiny_models:tiny_grey_resnet", resolution=32))
    assert loaded.channels == 1 and len(loaded.mean) == 1 and len(loaded.std) == 1
    assert loaded.mean[0] == pytest.approx(sum(IMAGENET_MEAN) / 3)  # its RGB statistics averaged
    assert preprocessing_record(loaded)["channels"] == "grayscale"
    assert with_preprocessing(load_model("tests.tiny_models:tiny_grey_resnet"), mean="0.2", std="0.3").mean == (0.2,)
    with pytest.raises(UsageError, match="1-channel network: give one number"):
        with_preprocessing(load_model("tests.tiny_models:tiny_grey_resnet"), mean="0.5,0.5,0.5")
    for i, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        Image.new("RGB", (40, 40), colour).save(tmp_path / f"{i}.png")
    x = eval_tensors(load_image_folder(tmp_path, 32), Preprocessing.of(loaded))
    assert x.shape == (2, 1, 32, 32)
    assert x[0].mean() > x[1].mean()  # luma: red is brighter than blue, not an average of equal channels


def test_a_model_taking_neither_rgb_nor_grey_is_refused_with_the_way_round():
    with pytest.raises(UsageError, match="takes 2-channel input.*RGB \\(3 channels\\) or grayscale"):
        with_preprocessing(load_model("tests.models.test_preprocessing:two_channel_resnet", resolution=32))


def test_a_models_own_filter_this_tool_lacks_is_refused_unless_the_user_chooses_one():
    from dataclasses import replace

    odd = replace(load_model(TINY, resolution=32), interpolation="random")
    with pytest.raises(UsageError, match="resizes its images with 'random'.*pass --interpolation"):
        with_preprocessing(odd)
    assert with_preprocessing(odd, interpolation="bicubic").interpolation == "bicubic"
