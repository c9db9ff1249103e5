"""pipeline profile --validate."""

import json
from pathlib import Path

from tests.cli.invoke import TINY, invoke


def test_profile_validate_compares_predicted_and_measured_drops(capsys):
    code, out, err = invoke(capsys, "profile", "--model", TINY, "--resolution", "32", "--backend", "torch",
                            "--validate", "2", "--profile-time-cap", "1")
    assert code == 0, err
    assert "median |error|" in out
    assert "latency model: additive (not fitted: 2 distinct multi-block drops" in out or \
        "latency model: additive (not fitted: 1 distinct" in out  # two random drops cannot be held out
    validation = Path(out.strip().splitlines()[-2].split("validation: ")[1])
    data = json.loads(validation.read_text())
    assert len(data["checks"]) == 2
    for check in data["checks"]:
        assert len(check["dropped"]) >= 2 and 0 < check["measured_ratio"] < 1.5
        assert check["additive_ratio"] == check["predicted_ratio"]  # the table carried the additive model
    table = json.loads(Path(out.strip().splitlines()[-1].split("table: ")[1].split(" (")[0]).read_text())
    assert table["latency_model"]["kind"] == "additive" and "reason" in table["latency_model"]["evaluation"]
