"""Driving the CLI in-process through main(), as the console script does, and checking its errors."""

from pipeline.cli import main

TINY = "tests.tiny_models:tiny_resnet"


FAST_RUN = ["--resolution", "32", "--allow-random-weights", "--scoring-steps", "3", "--recovery-steps", "4",
            "--batch-size", "4", "--profile-time-cap", "1", "--precision", "fp32"]
# --precision fp32: these tests are about other stages; tests/run/test_plan_stages.py runs --precision auto


def invoke(capsys, *args):
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code, err, expected_code, fragment):
    assert code == expected_code
    assert fragment in err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
