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
    assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in saved["records"])
    assert 0.0 <= saved["teacher_accuracy"] <= 1.0
    assert len(saved["candidates"]) == 7  # 3 stages of 3 BasicBlocks: all but the 2 downsampling ones
    assert all(s["measured_ratio"] > 0 for s in saved["selections"])
    md = (out / "fashion_mnist_smoke.md").read_text()
    assert "| practise-adaptors |" in md and "measured ratio" in md
    assert (out / "fashion_mnist_smoke.png").stat().st_size > 0

    # --resume with a second seed keeps the finished cell and runs only the new one
    main(["--smoke", "--data-dir", str(data), "--out", str(out), "--seeds", "0,1", "--resume"])
    resumed = json.loads((out / "fashion_mnist_smoke.json").read_text())
    assert [cell[2] for cell in resumed["cells_done"]] == [0, 1]
    assert resumed["records"][: len(saved["records"])] == saved["records"]
    assert {r["seed"] for r in resumed["records"] if r["method"] != "teacher"} == {0, 1}
    assert sum(r["method"] == "teacher" for r in resumed["records"]) == sum(
        r["method"] == "teacher" for r in saved["records"])


def test_fashion_mnist_missing_data_is_a_clear_error(tmp_path):
    from benchmarks.fashion_mnist import load_fashion_mnist

    with pytest.raises(SystemExit, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)
