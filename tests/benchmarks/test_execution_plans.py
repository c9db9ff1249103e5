"""The execution-plans benchmark's rule and table, on a recorded result (the benchmark itself takes an hour)."""

from __future__ import annotations

from benchmarks.execution_plans import render, rule_holds, single_levers


def _result(joint_agreement: float, joint_ratio: float = 0.45, joint_meets: bool = True) -> dict:
    agree = lambda value: {"opencv": value, "stamps": value}  # noqa: E731
    return {
        "machine": {"cpu": "a CPU", "cores": 2, "onnxruntime": "1", "torch": "2", "openvino": "3",
                    "cpu_flags": {"avx512_vnni": True, "avx512_bf16": True, "amx_tile": False}},
        "threads": 2, "held_out": {"opencv": 91, "stamps": 61},
        "precisions": {
            "int8-qdq-u8s8-channel": {"measured_ratio": 0.49, "kept": False, "agreement": agree(0.87)},
            "int8-qdq-s8s8-channel": {"measured_ratio": 0.95, "kept": False, "agreement": agree(0.88)},
            "openvino-bf16": {"measured_ratio": 0.53, "kept": True, "agreement": agree(0.96)},
            "openvino-int8": {"measured_ratio": 0.30, "kept": True, "agreement": agree(0.80)},
        },
        "resolution": {"192": {"measured_ratio": 0.79, "agreement": agree(0.70)},
                       "160": {"measured_ratio": 0.56, "agreement": agree(0.60)}},
        "budgets": {"0.78": {
            "joint": {"precision": "openvino-bf16", "dropped": [], "measured_ratio": joint_ratio,
                      "meets_budget": joint_meets, "agreement": agree(joint_agreement)},
            "depth": {"precision": "fp32", "dropped": ["a", "b", "c", "d"], "measured_ratio": 0.76,
                      "meets_budget": True, "agreement": agree(0.44)},
        }},
    }


def test_each_lever_offers_its_most_faithful_deployment_that_meets_the_budget():
    levers = single_levers(_result(0.96), 0.78)
    assert levers["onnxruntime INT8"]["what"] == "int8-qdq-u8s8-channel"  # s8s8 agrees more but misses 0.78
    assert levers["OpenVINO BF16"]["measured_ratio"] == 0.53
    assert levers["resolution only"]["what"] == "160 px"  # 192 px measured 0.79, over the budget
    assert levers["depth only"]["dropped"] == ["a", "b", "c", "d"]
    assert single_levers(_result(0.96), 0.25)["OpenVINO INT8"] is None  # 0.30 misses 0.25


def test_the_rule_fails_when_a_single_lever_agrees_more_or_the_joint_file_misses_the_budget():
    assert rule_holds(_result(0.96), 0.78) == (True, "holds")
    assert rule_holds(_result(0.955), 0.78)[0]  # within one image of the best lever: noise
    holds, why = rule_holds(_result(0.90), 0.78)
    assert not holds and "OpenVINO BF16" in why
    holds, why = rule_holds(_result(0.96, joint_ratio=0.80, joint_meets=False), 0.78)
    assert not holds and "over the budget" in why


def test_the_table_names_the_machine_every_lever_and_the_verdict():
    text = render(_result(0.90))
    assert "avx512_bf16 yes" in text and "amx_tile no" in text
    assert "| 0.78 | int8-qdq-u8s8-channel: 0.490, 87.0 / 87.0 |" in text
    assert "**fails**: OpenVINO BF16 agreed more" in text


def test_only_the_run_allowed_a_smaller_input_is_held_to_the_resolution_lever():
    result = _result(0.96)
    result["resolution"]["160"]["agreement"] = {"opencv": 0.99, "stamps": 0.99}  # the smaller input agrees most
    assert rule_holds(result, 0.78) == (True, "holds")  # the default run may not change the input size
    result["budgets"]["0.78"]["sized"] = result["budgets"]["0.78"]["joint"] | {"input_resolution": None}
    holds, why = rule_holds(result, 0.78, "sized")
    assert not holds and why == "resolution only agreed more"
    result["budgets"]["0.78"]["sized"] |= {"input_resolution": 160, "agreement": {"opencv": 0.99, "stamps": 0.99}}
    assert rule_holds(result, 0.78, "sized") == (True, "holds")
    assert "openvino-bf16 at 160 px, 0 blocks: 0.450, 99.0 / 99.0 | holds |" in render(result)


def test_a_shipped_file_within_the_measurements_noise_of_the_budget_counts_as_meeting_it():
    assert rule_holds(_result(0.96, joint_ratio=0.785, joint_meets=False), 0.78) == (True, "holds")
