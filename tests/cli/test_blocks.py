"""pipeline blocks: candidates as JSON."""

import json

from tests.cli.invoke import TINY, invoke


def test_blocks_lists_candidates_as_json(capsys):
    code, out, _ = invoke(capsys, "blocks", "--model", TINY, "--resolution", "32", "--json")
    assert code == 0
    data = json.loads(out)
    assert [c["name"] for c in data["candidates"]] == ["layers.0.0", "layers.0.1", "layers.1.1", "layers.2.1"]
    assert all(c["macs"] > 0 and c["params"] > 0 for c in data["candidates"])
