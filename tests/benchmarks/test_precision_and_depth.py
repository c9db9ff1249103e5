"""The precision-and-depth benchmark's table: what each technique deployed, and when it missed the budget."""

from benchmarks.precision_and_depth import best_precision_only, render


def _entry(precision, dropped, ratio, meets, agreement):
    return {"precision": precision, "dropped": dropped, "deployed": "recovered", "measured_ratio": ratio,
            "meets_budget": meets, "agreement": {"opencv": agreement, "stamps": agreement}}


RESULT = {
    "machine": {"cpu": "a CPU", "cores": 2, "onnxruntime": "1", "torch": "2"}, "threads": 2, "held_out": {"opencv": 91, "stamps": 61},
    "budgets": {"0.4": {"depth": _entry("fp32", ["a"] * 9, 0.5, False, 0.15),
                        "joint": _entry("int8-x", ["a"] * 9, 0.39, True, 0.17)}},
    "precision_only": {"int8-x": {"measured_ratio": 0.62, "kept": True, "reason": "", "agreement": {"opencv": 0.87, "stamps": 0.87}},
                       "int8-y": {"measured_ratio": 0.3, "kept": False, "reason": "r", "agreement": {"opencv": 0.4, "stamps": 0.5}},
                       "int8-z": {"measured_ratio": 0.35, "kept": False, "reason": "r", "agreement": {"opencv": 0.6, "stamps": 0.5}}},
}


def test_a_deployment_that_misses_the_budget_is_said_to_and_precision_only_takes_the_most_faithful_that_meets_it():
    row = next(line for line in render(RESULT).splitlines() if line.startswith("| 0.4 |"))
    depth, only, joint = row.split(" | ")[1:4]
    assert "misses the budget" in depth and "misses" not in joint
    assert only.startswith("int8-z: ratio 0.350")  # int8-x is slower than 0.4; int8-z agrees more than int8-y
    assert best_precision_only(RESULT, 0.3)[0] == "int8-y" and best_precision_only(RESULT, 0.2) is None


def _fashion_entry(precision, ratio, meets, accuracy):
    return {"precision": precision, "dropped": [], "deployed": "original", "measured_ratio": ratio,
            "meets_budget": meets, "test_accuracy": accuracy, "agreement": accuracy}


def test_the_fashion_section_scores_by_test_accuracy_and_is_rendered_beside_lite0():
    from benchmarks.precision_and_depth_fashion import best_precision_only as best_fashion

    fashion = {"teacher_accuracy": 0.85, "test_images": 10000, "tiny_set": 100, "report_images": 300,
               "budgets": {"0.78": {"depth": _fashion_entry("fp32", 0.80, False, 0.84),
                                    "joint": _fashion_entry("int8-x", 0.70, True, 0.849)}},
               "precision_only": {"int8-x": {"measured_ratio": 0.70, "kept": True, "reason": "", "test_accuracy": 0.849,
                                             "agreement": 0.98},
                                  "int8-y": {"measured_ratio": 0.60, "kept": False, "reason": "r", "test_accuracy": 0.80,
                                             "agreement": 0.9}}}
    text = render(RESULT | {"fashion": fashion})
    row = next(line for line in text.split("## Fashion-MNIST")[1].splitlines() if line.startswith("| 0.78 |"))
    depth, only, joint = row.split(" | ")[1:4]
    assert "misses the budget" in depth and "84.00%" in depth
    assert only.startswith("int8-x: ratio 0.700, 84.90%")  # more accurate than int8-y, and it meets 0.78
    assert best_fashion(fashion, 0.65)[0] == "int8-y" and best_fashion(fashion, 0.5) is None


def test_added_seeds_join_the_stored_seed_and_the_cell_gives_their_mean_and_spread():
    from benchmarks.precision_and_depth_fashion import by_seed, merge, render as render_fashion

    stored = {"teacher_accuracy": 0.86, "test_images": 10000, "tiny_set": 100, "report_images": 300,
              "precision_only": {"int8-x": {"measured_ratio": 0.9, "kept": True, "reason": "", "test_accuracy": 0.85,
                                            "agreement": 0.97}},
              "budgets": {"0.78": {"depth": _fashion_entry("fp32", 0.72, True, 0.85),
                                   "joint": _fashion_entry("int8-x", 0.75, True, 0.84)},
                          "0.9": {"depth": _fashion_entry("fp32", 0.88, True, 0.86)}}}
    new = {"teacher_accuracy": 0.86, "test_images": 10000, "tiny_set": 100, "report_images": 300,
           "precision_only": {"int8-x": {"measured_ratio": 0.5, "kept": True, "reason": "", "test_accuracy": 0.1,
                                         "agreement": 0.1}},
           "budgets": {"0.78": {"depth": {"by_seed": {"1": _fashion_entry("fp32", 0.73, True, 0.86)}},
                                "joint": {"by_seed": {"1": _fashion_entry("int8-x", 0.79, False, 0.86)}}}}}
    merged = merge(stored, new)
    assert sorted(by_seed(merged["budgets"]["0.78"]["joint"])) == ["0", "1"]
    assert merged["budgets"]["0.9"] == stored["budgets"]["0.9"]  # a budget not run again is kept
    assert merged["precision_only"] == stored["precision_only"]  # the stored survey is kept
    row = next(line for line in render_fashion(merged) if line.startswith("| 0.78 |"))
    depth, _, joint = row.split(" | ")[1:4]
    assert "2 seeds" in joint and "**85.00 ± 1.41%**" in joint and "84.00 / 86.00" in joint
    assert "seed 1 misses the budget" in joint
    assert "**85.50 ± 0.71%**" in depth and "misses" not in depth
