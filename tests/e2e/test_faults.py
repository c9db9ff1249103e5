"""Representative faults (the full table is benchmarks/faults.py): a damaged stage file of a finished run."""

import pytest
import torch

from tests.cli.invoke import FAST_RUN, TINY, invoke


@pytest.mark.slow
def test_a_damaged_deployed_state_dict_is_named_and_its_stage_redone_bit_identically(capsys, image_folder, tmp_path,
                                                                                      even_savings):
    out = tmp_path / "run"
    args = ["run", "--model", TINY, *FAST_RUN, "--data", str(image_folder), "--backend", "torch",
            "--latency-budget", "0.9", "--profile-time-cap", "1", "--export", "torchscript", "--out", str(out)]
    assert invoke(capsys, *args)[0] == 0
    deployed = torch.load(out / "compressed_state_dict.pt", weights_only=True)
    content = (out / "compressed_state_dict.pt").read_bytes()
    (out / "compressed_state_dict.pt").write_bytes(content[: len(content) // 2])  # truncated
    selection_mtime = (out / "selection.json").stat().st_mtime_ns
    code, _, err = invoke(capsys, *args)
    assert code == 0, err
    assert "compressed_state_dict.pt is damaged" in err and "Traceback" not in err
    assert (out / "compressed_state_dict.pt.damaged").exists() and (out / "report.json").exists()
    assert (out / "selection.json").stat().st_mtime_ns == selection_mtime  # earlier stages kept
    # bit-identical holds: the redone stage rebuilds the deployed weights from the kept recovered_state_dict.pt in
    # this process (no training again), and the run's training_layout.json is read back, not timed again
    redone = torch.load(out / "compressed_state_dict.pt", weights_only=True)
    assert redone.keys() == deployed.keys() and all(torch.equal(redone[k], deployed[k]) for k in deployed)
