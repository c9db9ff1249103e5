"""The deployment choice among unrecovered, blends and recovered."""



def test_the_best_candidate_agrees_most_then_has_the_lowest_kl_then_changed_least():
    from pipeline.run.deployment import _best_candidate

    def report(agreements, kls):
        names = ["unrecovered", "halfway", "recovered"]
        return {**{n: {"top1_agreement": a} for n, a in zip(names, agreements)}, "kl": dict(zip(names, kls))}

    assert _best_candidate(report([0.5, 0.7, 0.6], [1.0, 0.9, 0.5])) == "halfway"
    assert _best_candidate(report([0.5, 0.6, 0.6], [1.0, 0.9, 0.5])) == "recovered"
    assert _best_candidate(report([0.6, 0.6, 0.6], [0.5, 0.5, 0.5])) == "unrecovered"
