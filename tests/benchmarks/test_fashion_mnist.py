"""The Fashion-MNIST benchmark on a small synthetic idx set in the real file format."""

import json

import pytest


def _write_idx(path, array):
    """An idx .gz file in the real MNIST format: magic (0x08 = ubyte, ndim), big-endian dims, data."""
    import gzip

    import numpy as np

    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _fake_fashion_mnist(folder, train: int = 400, test: int = 200):
    """Class-dependent patterns: a bright bar whose row and width depend on the class, plus noise."""
    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            row = 3 + 2 * int(c)
            images[i, row:row + 3, 4:10 + 2 * int(c)] = 230
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.mark.slow
def test_fashion_mnist_benchmark_smoke(tmp_path):
    from benchmarks.fashion_mnist import METHODS, main, read_idx

    data = _fake_fashion_mnist(tmp_path / "fmnist")
    assert read_idx(data / "train-images-idx3-ubyte.gz").shape == (400, 28, 28)
    out = tmp_path / "out"
    main(["--smoke", "--data-dir", str(data), "--out", str(out)])
    saved = json.loads((out / "fashion_mnist_smoke.json").read_text())
    assert {r["method"] for r in saved["records"]} == set(METHODS)
    assert len(saved["candidates"]) == 7  # 3 stages of 3 BasicBlocks: all but the 2 downsampling ones
    _check_values(saved, data, out)

    # --resume with a second seed keeps the finished cell and runs only the new one
    main(["--smoke", "--data-dir", str(data), "--out", str(out), "--seeds", "0,1", "--resume"])
    resumed = json.loads((out / "fashion_mnist_smoke.json").read_text())
    assert [cell[2] for cell in resumed["cells_done"]] == [0, 1]
    assert resumed["records"][: len(saved["records"])] == saved["records"]
    assert {r["seed"] for r in resumed["records"] if r["method"] != "teacher"} == {0, 1}
    assert sum(r["method"] == "teacher" for r in resumed["records"]) == sum(
        r["method"] == "teacher" for r in saved["records"])


def _check_values(saved: dict, data, out) -> None:
    """The saved figures are what they claim: recomputed from the cached teacher, the latency table and the records."""
    import torch

    from benchmarks.fashion_mnist import CifarResNet, accuracy, cache_dir, load_fashion_mnist, padded

    meta = saved["settings"]["teacher"]
    teacher = CifarResNet(tuple(meta["widths"]), meta["depth_per_stage"])
    teacher.load_state_dict(torch.load(cache_dir() / f"{meta['key']}.pt", weights_only=True))
    test = load_fashion_mnist(data)
    n = saved["settings"]["test_images"]
    labels = torch.from_numpy(test["test_labels"][:n].astype("int64"))
    assert saved["teacher_accuracy"] == accuracy(teacher, padded(test["test_images"])[:n], labels)
    by_method = {r["method"]: r for r in saved["records"]}
    assert by_method["teacher"]["test_accuracy"] == saved["teacher_accuracy"]
    # "none" is PRACTISE's blocks unrecovered: the unrecovered figure every recovery of those blocks reports
    assert by_method["none"]["test_accuracy"] == by_method["practise-adaptors"]["unrecovered_accuracy"]
    assert all(r["test_accuracy"] * n == round(r["test_accuracy"] * n) for r in saved["records"])  # counts of n
    table = saved["latency_table"]
    for sel in saved["selections"]:  # the predicted ratio is the table's, the verdict the measurement's
        saved_ms = sum(table["savings_ms"][b] for b in sel["dropped"])
        assert sel["predicted_ratio"] == pytest.approx(1 - saved_ms / table["full_ms"])
        assert sel["meets_budget"] == (sel["measured_ratio"] <= sel["budget"])
    md = (out / "fashion_mnist_smoke.md").read_text()
    adaptors = by_method["practise-adaptors"]["test_accuracy"]
    assert f"| practise-adaptors | {100 * adaptors:.2f} ± 0.00 (n=1) |" in md
    from PIL import Image

    with Image.open(out / "fashion_mnist_smoke.png") as png:  # one tiny-set size: 5 x 4.2 inches at 110 dpi
        assert png.format == "PNG" and png.size == (550, 462)


def test_fashion_mnist_missing_data_is_a_clear_error(tmp_path):
    from benchmarks.fashion_mnist import load_fashion_mnist

    with pytest.raises(SystemExit, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)
