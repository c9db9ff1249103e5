"""pipeline run --recovery-time: shared among the recipes; refused with one named recipe, before any work."""

from tests.cli.invoke import FAST_RUN, TINY, assert_clean_error, invoke


def test_recovery_time_with_a_named_method_is_refused_before_any_work(capsys, image_folder, tmp_path):
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(image_folder),
                          "--recovery-method", "mimic", "--recovery-time", "30", "--out", str(tmp_path / "run"))
    assert_clean_error(code, err, 2, "--recovery-time shares time among the recipes")
    assert not (tmp_path / "run").exists()


def test_recovery_time_must_be_positive(capsys, image_folder, tmp_path):
    code, _, err = invoke(capsys, "run", "--model", TINY, "--data", str(image_folder), "--recovery-time", "0",
                          "--out", str(tmp_path / "run"))
    assert code == 2 and "--recovery-time" in err
