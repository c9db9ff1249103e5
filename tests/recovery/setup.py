"""The small network and tiny-set split the recovery tests share."""

from pipeline.data.tiny_set import (
    Preprocessing,
    eval_tensors,
    load_image_folder,
    split_holdout,
)
from pipeline.models import load_model
from pipeline.network.blocks import analyse


def tiny_recovery_setup(image_folder):
    """(loaded model, structure, preprocessing, train split, selection images) for a deep tiny ResNet at 32 px."""
    loaded = load_model("tests.tiny_models:tiny_resnet_deep", resolution=32)
    structure = analyse(loaded.module, 32)
    tiny = load_image_folder(image_folder, 32)
    prep = Preprocessing(32, loaded.mean, loaded.std)
    train, selection = split_holdout(tiny, 0.25, 0)
    return loaded, structure, prep, train, eval_tensors(selection, prep)
