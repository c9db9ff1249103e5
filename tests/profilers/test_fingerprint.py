"""Device fingerprints: keys stay stable as options are added."""

from dataclasses import replace


def test_fingerprint_options_keep_old_keys_and_separate_new_ones():
    from profilers import DeviceFingerprint

    base = DeviceFingerprint("GPU", "gpu", "9.0", "cuda-12", "torch-cuda", "2.14", "fp16", 1, 224, 16, "2.14", "x86_64")
    old_style = {k: v for k, v in base.to_dict().items() if k != "options"}
    assert DeviceFingerprint.from_dict(old_style).key() == base.key()
    graphs = replace(base, options="cuda-graphs")
    assert graphs.key() != base.key() and "cuda-graphs" in graphs.describe()
