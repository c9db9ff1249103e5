"""Paired change of agreement, counted per image with an exact test."""

import torch


def test_paired_change_counts_images_and_tests_them_exactly():
    from pipeline.network.evaluation import paired_change

    teacher = torch.eye(10)
    before, after = teacher.clone(), teacher.clone()
    after[:2] = torch.roll(after[:2], 1, dims=1)  # two images lose agreement
    assert paired_change(before, after, teacher) == {"images": 10, "gained": 0, "lost": 2, "p_value": 0.5}
    wrong = torch.roll(teacher, 1, dims=1)
    eight = paired_change(wrong, torch.cat([teacher[:8], wrong[8:]]), teacher)
    assert (eight["gained"], eight["lost"]) == (8, 0) and abs(eight["p_value"] - 2 / 256) < 1e-12
    assert paired_change(teacher, teacher, teacher)["p_value"] == 1.0
