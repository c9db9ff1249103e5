"""The report images choose what ships among every recipe that recovered, not only the selection split's pick."""

from types import SimpleNamespace

import torch

from pipeline.data.tiny_set import Preprocessing, load_image_folder
from pipeline.models import load_model
from pipeline.network.surgery import drop_blocks
from pipeline.recovery.trials import recipe_files
from pipeline.run import deployment
from pipeline.run.deployment import COMPRESSED, RECOVERED, stage_evaluation
from pipeline.run.presets import get_preset
from pipeline.run.runfolder import RunFolder

DROPPED = ["layers.1.1"]
# recipe -> (marker written into its fc.bias, report images it gets wrong); unrecovered gets 3 wrong
RECIPES = {"adaptors": (1.0, 2), "all-bn-frozen": (2.0, 0), "all-logits": (3.0, 1)}


def _recipe_folder(tmp_path, loaded) -> RunFolder:
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    states = {}
    for name, (marker, _) in RECIPES.items():
        state = drop_blocks(loaded.module, DROPPED).state_dict()
        state["fc.bias"] = torch.full_like(state["fc.bias"], marker)
        states[name] = state
        torch.save(state, recipe_files(folder.path, name)[1])
    folder.save_tensors(RECOVERED, states["adaptors"])  # the selection split's pick
    trials = [{"recipe": n, "status": "finished", "kept": "recovered"} for n in RECIPES]
    trials.append({"recipe": "all-bn-reestimated", "status": "diverged", "reason": "the loss was nan at step 3"})
    folder.write_json("recovery.json", {"settings": {}, "recipe": "adaptors", "kept": "recovered", "recipes": trials})
    folder.write_json("dropped_blocks.json", {"dropped": DROPPED, "precision": "fp32"})
    folder.write_json("selection.json", {"budget": "0.9", "target_ratio": 0.9, "dropped": DROPPED, "precision_plan": None})
    return folder


def test_the_recipe_that_agrees_most_on_the_report_images_is_deployed(image_folder, tmp_path, monkeypatch):
    loaded = load_model("tests.tiny_models:tiny_resnet", resolution=32)
    images = load_image_folder(image_folder, 32)
    folder = _recipe_folder(tmp_path, loaded)
    wrong_by_marker = {marker: wrong for marker, wrong in RECIPES.values()}

    def fake_logits(network, precision, x, calibration, scheme_options=None):
        """The original's predictions, with the first k images moved to another class (k by the recipe's marker)."""
        logits = loaded.module.eval()(x).detach().clone()
        wrong = wrong_by_marker.get(float(network.fc.bias.detach()[0]), 3)
        for i in range(min(wrong, len(x))):
            logits[i, (int(logits[i].argmax()) + 1) % logits.shape[1]] = logits[i].max() + 10
        return logits

    monkeypatch.setattr(deployment, "deployed_logits", fake_logits)
    ctx = SimpleNamespace(folder=folder, loaded=loaded, train=images, report_set=images, report_source="validation folder",
                          prep=Preprocessing(32, loaded.mean, loaded.std), preset=get_preset("fast"), timings={})
    stage_evaluation(ctx)
    evaluation = folder.read_json("evaluation.json")
    assert evaluation["candidates"] == ["unrecovered", "recovered", "recovered by all-bn-frozen",
                                        "recovered by all-logits"]  # the diverged recipe is not offered
    assert evaluation["deployed"] == "recovered by all-bn-frozen"
    assert "recovery by recipe all-bn-frozen raised top-1 agreement" in evaluation["verdict"]
    shipped = torch.load(folder.file(COMPRESSED), weights_only=True)
    assert float(shipped["fc.bias"][0]) == 2.0
