"""The stopping policy (gzsl.selection), held through the replayer (gzsl.replay) on curves written
here, whose right answers are worked out by hand in each test, and on the recorded curves."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gzsl import selection
from gzsl.replay import Curve, read_curves, replay, summarize
from gzsl.selection import CONTINUE, STOP, Halving

MEASURED = Path(__file__).parents[1] / "benchmarks" / "measured"


def curve(points) -> Curve:
    return Curve({}, tuple(points))


def ramp(final: float, epochs: int = 30, every: int = 2, start: float = 0.0) -> Curve:
    """H rising linearly from `start` at the first evaluation to `final` at the last."""
    es = list(range(every, epochs + 1, every))
    return curve([(e, start + (final - start) * (e - es[0]) / (es[-1] - es[0])) for e in es])


def test_rungs_halve_down_from_the_end_of_the_alignment_warm_ups_on_the_evaluation_grid():
    # alignment ends at 75% (the cross-reconstruction warm-up, gzsl.defaults): epoch 75 of 100, 23 of 30
    # 75 / 3 = 25; 25 / 3 = 8.3 is below the grace period (10% of the run: 10)
    assert selection.rung_epochs(100, 5) == [25, 75]
    assert selection.rung_epochs(100, 10) == [30, 80]  # on a grid of 10: 75 -> 80, 26.7 -> 30
    assert selection.rung_epochs(30, 2) == [8, 24]  # 23 -> 24, 8; 2.7 is below 10% of 30
    assert selection.rung_epochs(100, 5, reduction_factor=2) == [20, 40, 75]  # 37.5 -> 40, 18.75 -> 20
    assert selection.rung_epochs(100, 5, grace_period=5) == [10, 25, 75]  # 8.3 -> 10
    assert selection.rung_epochs(100, 5, grace_period=30) == [75]  # 25 is below the grace period
    assert selection.rung_epochs(100, 5, grace_period=90) == [90]  # past the alignment rung: that one rung
    assert selection.rung_epochs(10, 1, grace_period=10) == []


def test_the_recipe_scores_only_the_rungs_the_last_epoch_and_the_peak_grid():
    assert selection.recipe_epochs(100, 5, [25, 75]) == (25, 75, 100)
    assert selection.recipe_epochs(100, 5, [25, 75], peak_every=20) == (20, 25, 40, 60, 75, 80, 100)
    assert selection.recipe_epochs(30, 2, [7, 23]) == (8, 24, 30)  # a rung is judged on the grid's next epoch
    assert selection.recipe_epochs(10, 1, []) == (10,)


def test_spearman_and_its_lower_bound_match_a_hand_computation():
    assert selection.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert selection.spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # ranks (1, 2, 3, 4) against (2, 1, 4, 3): d^2 = 4, rho = 1 - 6 * 4 / (4 * 15) = 0.6
    assert selection.spearman([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(0.6)
    assert math.isnan(selection.spearman([1, 1, 1], [1, 2, 3]))
    # n = 7, rho = 1 - 6 * 2 / (7 * 48) = 0.96429; atanh(rho) = ln(55) / 2 = 2.0037; minus
    # 1.28 * 1.06 / sqrt(4) = 0.6784: 1.3253, tanh -> 0.8681
    lo = selection.spearman_lower([1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 5, 4, 6, 7], 1.28)
    assert lo == pytest.approx(math.tanh(math.atanh(1 - 12 / 336) - 1.28 * 1.06 / 2), abs=1e-12)
    assert lo == pytest.approx(0.8681, abs=1e-3)


def test_a_rung_of_noise_stops_nobody():
    # The rung: a realistic CUB-format set at epoch 10 of 30, every H between 0 and 4.14,
    # below the floor. And above the floor, a rung whose spread is within the noise (2 H).
    for values in ([4.14, 1.03, 1.36, 0.21, 3.0, 0.0, 2.2, 0.5, 1.9], [31.0, 30.2, 29.5, 30.9, 29.1, 30.0]):
        policy = Halving(30, 1, grace_period=24)  # one rung, at 24
        policy._trusted[24] = math.nan  # trusted from the start: only the guards stand
        assert {policy.on_result(f"t{i}", 24, h) for i, h in enumerate(values)} == {CONTINUE}
    # Through the replayer: 64 trials of H 0-4 at every epoch up to the end stop nobody.
    flat = [curve([(e, (k * 7 % 5) * 0.8 + e / 100) for e in range(2, 31, 2)]) for k in range(5)]
    for seed in range(20):
        assert replay(flat, lambda e, k: Halving(e, k), trials=64, slots=4, seed=seed).stopped == 0


def test_a_clear_loser_is_stopped_early():
    # Five configurations whose order never changes, 10 H apart (final 10 .. 50): every rung agrees
    # with the end, so once six trials have shown it the lowest rung (8 of 30) judges, and a loser
    # that arrives there after that is stopped at epoch 8, not 24.
    curves = [ramp(final, start=final / 10) for final in (10, 20, 30, 40, 50)]
    out = replay(curves, lambda e, k: Halving(e, k), trials=64, slots=4, seed=0)
    assert out.stopped >= 30 and min(out.stop_epochs) == 8 and out.regret == 0.0 and out.wrongful == 0
    alone = replay(curves, lambda e, k: Halving(e, k, grace_period=24), trials=64, slots=4, seed=0)
    assert out.cost < alone.cost - 0.15 and alone.cost > 0.8  # the alignment rung alone saves little
    policy = Halving(30, 2)
    replay(curves, lambda e, k: policy, trials=64, slots=4, seed=0)
    assert policy.trusted_rungs() == [8, 24]


def test_a_rung_whose_order_disagrees_with_the_end_never_judges():
    # Late bloomers: the order at epoch 8 is the reverse of the final order. The lower rung
    # must never earn trust; the alignment rung (24), where the order has settled, still judges.
    curves = []
    for k, final in enumerate((10, 20, 30, 40, 50)):
        early = 40 - 8 * k  # the best early is the worst at the end
        curves.append(curve([(e, early if e <= 12 else final) for e in range(2, 31, 2)]))
    policy = Halving(30, 2)
    out = replay(curves, lambda e, k: policy, trials=64, slots=4, seed=0)
    assert policy.trusted_rungs() == [24] and set(out.stop_epochs) == {24}
    assert out.regret == 0.0 and out.wrongful == 0


def test_a_promoted_trial_is_never_stopped_on_a_stale_value():
    # A trial passed rung 8 as its leader (H 20); later trials fill rung 8 with better values. It
    # is never judged at rung 8 again, however low its old value now ranks, and it goes on to win.
    policy = Halving(30, 2)
    policy._trusted.update({24: math.nan, 8: 0.9})
    assert policy.on_result("early", 8, 20.0) == CONTINUE
    assert [policy.on_result(t, 8, 45.0 + i) for i, t in enumerate("abc")] == [CONTINUE] * 3
    assert policy.on_result("late", 8, 20.0) == STOP  # the rung itself still judges newcomers
    assert [policy.on_result("early", e, 20.0 + e) for e in (10, 12, 14, 16)] == [CONTINUE] * 4
    assert "early" not in policy.stopped
    # And through the replayer, in an arrival order written out: X (fast) passes rung 8 as its only
    # value (H 20), then A, B and C (slow) fill rung 8 with 45-47 while X still trains; X is never
    # judged at rung 8 again and ends the study's best. L arrives at rung 8 last, with H 20: stopped.
    x = curve([(e, 20.0 if e <= 8 else 60.0) for e in range(2, 31, 2)])
    abc = [curve([(e, h if e <= 8 else h - 5) for e in range(2, 31, 2)]) for h in (45.0, 46.0, 47.0)]
    late = curve([(e, 20.0 if e <= 8 else 10.0) for e in range(2, 31, 2)])

    class Blind(Halving):  # every rung trusted from the first trial: only the promotion rule acts
        def trusted(self, rung):
            return True

    out = replay([x, *abc, late], lambda e, k: Blind(e, k), order=[0, 1, 2, 3, 4], speeds=[2.0, 1.0, 1.0, 1.0, 0.5],
                 slots=5)
    assert out.chosen_final == 60.0 and out.wrongful == 0  # X completed: never stopped on its stale 20
    # L stops at rung 8. At rung 24 X (60) is first; A (40) meets the cutoff 53.3 of (60, 40) and B (41)
    # the cutoff 47.3 of (60, 40, 41): both more than 2 H below; C (42) meets 42 of (60, 40, 41, 42): goes on.
    assert sorted(out.stop_epochs) == [8, 24, 24]


def test_the_replayer_prices_cost_and_regret_as_defined():
    # Two configurations, 30 epochs: A ends at 50, B at 10. Once the rungs trust their order, a B
    # that arrives after an A is far below the cutoff and stops at a rung; cost counts its epochs.
    a, b = ramp(50.0, start=20.0), ramp(10.0, start=5.0)
    out = replay([a, b], lambda e, k: Halving(e, k), trials=64, slots=1, seed=3)
    assert out.regret == 0.0 and out.chosen_final == 50.0 and out.best_final == 50.0 and out.stopped > 10
    assert out.cost * 64 * 30 == pytest.approx(30 * (64 - out.stopped) + sum(out.stop_epochs))
    assert set(out.stop_epochs) <= {8, 24}
    # Without stopping (a policy with no rungs): cost 1.
    assert replay([a, b], lambda e, k: Halving(e, k, grace_period=e), trials=8, seed=0).cost == 1.0


def test_a_curves_file_that_is_not_one_is_refused_naming_the_line(tmp_path):
    from gzsl.errors import ConfigError

    bad = tmp_path / "c.jsonl"
    bad.write_text('{"params": {}, "curve": [[5, 1.0], [10, 2.0]]}\n{"params": {}, "curve": [[10, 1.0], [5, 2.0]]}\n')
    with pytest.raises(ConfigError, match=r"c.jsonl:2: curve epochs must be given and increase"):
        read_curves(bad)
    bad.write_text('{"curve": "no"}\n')
    with pytest.raises(ConfigError, match=r"c.jsonl:1: not a curve line"):
        read_curves(bad)


@pytest.mark.parametrize("name", ["curves-cub-sim-100ep-every10.jsonl", "curves-synth-small-30ep.jsonl"])
def test_recorded_curves_replay_without_a_wrongful_stop_and_cheaper_than_the_alignment_rung_alone(name):
    curves = read_curves(MEASURED / name)
    s = summarize(curves, lambda e, k: Halving(e, k), orders=40, trials=64, slots=4)
    fixed = summarize(curves, lambda e, k: Halving(e, k, grace_period=selection.alignment_rung(e, k)),
                      orders=40, trials=64, slots=4)
    assert s.wrongful == 0 and s.regret <= 1.0
    assert s.cost <= fixed.cost + 0.02 and s.cost < 1.0


def test_the_audit_picks_every_kth_stop_within_its_cap():
    stops = [f"s{i}" for i in range(20)]
    # one in eight: the 8th and 16th stops; 10% of 600 trained epochs is 60: two runs of 30
    assert selection.audited(stops, trained_epochs=600, epochs=30) == ["s7", "s15"]
    assert selection.audited(stops, trained_epochs=300, epochs=30) == ["s7"]  # the cap wins: one run of 30
    assert selection.audited(stops, trained_epochs=200, epochs=30) == []  # a small study audits none
    assert selection.audited(stops, 200, 30, fraction=1.0) == stops  # audit = 1: every stop
    assert selection.audited(stops, 600, 30, fraction=0.0) == []
    assert selection.audited(stops, 6000, 30, fraction=0.5)[:3] == ["s1", "s3", "s5"]
    assert selection.wrongful({"a": 50.0, "b": 52.5, "c": float("nan")}, 50.0, 2.0) == ["b"]


def test_the_audit_finds_a_wrongful_stop_planted_in_recorded_curves():
    # synth-small's recorded curves with every candidate rung judging from the first trial (no
    # evidence): rung 8 stops its late bloomer (H 15 at epoch 8, 56.9 at the end). An audit of
    # every stop finds each wrongful stop the replay counts; no audit finds nothing.
    curves = read_curves(MEASURED / "curves-synth-small-30ep.jsonl")

    class Blind(Halving):
        def trusted(self, rung):
            return True

    planted = found = 0
    for seed in range(20):
        out = replay(curves, lambda e, k: Blind(e, k), trials=64, slots=4, seed=seed, audit=1.0)
        assert out.audited == out.stopped and out.audit_found == out.wrongful
        # each audited stop is retrained from scratch: a whole run of 30 epochs on top of the study's
        assert out.cost * 64 * 30 == pytest.approx(30 * (64 - out.stopped) + sum(out.stop_epochs) + 30 * out.audited)
        planted, found = planted + out.wrongful, found + out.audit_found
        assert replay(curves, lambda e, k: Blind(e, k), trials=64, slots=4, seed=seed).audit_found == 0
    assert planted > 0 and found == planted


def test_the_rules_at_their_boundaries():
    """Each rule at the value where it turns, worked out by hand (what mutation testing found loose)."""
    # quantile: numpy's linear interpolation; of [0, 10, 20, 40] at 2/3: position 2 -> 20; at 0.75: 20 + 0.25 * 20
    assert selection.quantile([40.0, 0.0, 20.0, 10.0], 2 / 3) == pytest.approx(20.0)
    assert selection.quantile([40.0, 0.0, 20.0, 10.0], 0.75) == pytest.approx(25.0)
    assert selection.quantile([7.0], 0.5) == 7.0
    # would_stop, eta 3 over [0, 10, 20, 40]: cutoff 20; h 17.9 is below it by more than 2, 18 is not.
    values = [0.0, 10.0, 20.0, 40.0]
    assert selection.would_stop(values, 17.9, 3, 5.0, 2.0) and not selection.would_stop(values, 18.0, 3, 5.0, 2.0)
    assert not selection.would_stop([5.0, 5.0, 5.0], 5.0, 3, 5.0, 0.0)  # the leader (a tie included) never stops
    assert selection.would_stop([5.0, 1.0, 0.0], 0.0, 3, 5.0, 0.0)  # a rung whose best is exactly h_floor judges
    assert not selection.would_stop([4.9, 1.0, 0.0], 0.0, 3, 5.0, 0.0)  # ... and below it stops nobody
    # wrongful: ahead of the chosen by more than h_noise; exactly h_noise is not
    assert selection.wrongful({"a": 52.0, "b": 52.1, "c": float("nan"), "d": None}, 50.0, 2.0) == ["b"]
    # on_grid: epoch 0.5 is judged at the first epoch; recipe_epochs with a peak grid of 1 scores every epoch
    assert selection.on_grid(0.5, 1, 10) == 1 and selection.on_grid(0.2, 1, 10) == 1
    assert selection.recipe_epochs(4, 1, [], peak_every=1) == (1, 2, 3, 4)
    assert selection.alignment_rung(1, 1) == 1  # a one-epoch run: its only epoch
    # audited: a fraction of 0.6 rounds to every 2nd stop; 0.9 to every stop (k = 1), within the cap
    stops = ["s1", "s2", "s3", "s4"]
    assert selection.audited(stops, 10_000, 10, 0.6) == ["s2", "s4"]
    assert selection.audited(stops, 10_000, 10, 0.9) == stops
    assert selection.audited(stops, 100, 10, 0.9) == ["s1"]  # 10% of 100 trained epochs: one 10-epoch run


def test_a_resumed_policy_records_what_each_ended_trial_reached():
    """record(): the first H at or after each rung it reached, its final H at the last epoch, and
    the highest rung it reached as its stop; describe() names each rung's count and trust."""
    p = Halving(30, 2, 3)  # rungs 8 and 24
    p.record("done", [(8, 10.0), (24, 30.0), (30, 35.0)])
    p.record("stopped", [(10, 5.0), (24, 6.0)], stopped=True)  # 8 judged on the next evaluation, 10
    p.record("early", [(8, 1.0)], stopped=True)
    assert p.recorded == {8: {"done": 10.0, "stopped": 5.0, "early": 1.0}, 24: {"done": 30.0, "stopped": 6.0}}
    assert p.final == {"done": 35.0} and p.stopped == {"stopped": 24, "early": 8}
    assert p.describe() == "8 (untrusted): 3, 24 (untrusted): 2"


def test_trust_at_its_boundaries():
    """The highest rung trusts itself at exactly trust_trials trials; a lower one is judged against
    the rung directly above it, and refuses trust when its cutoff would stop a trial that lands
    exactly h_noise below the best above (what mutation testing found unchecked)."""
    top = Halving(30, 2, 3)  # rungs 8 and 24
    for i in range(5):
        top.record(f"t{i}", [(8, i), (24, 10.0 + i)])
    assert not top.trusted(24)
    top.record("t5", [(8, 5.0), (24, 15.0)])
    assert top.trusted(24)  # six unjudged trials reached it

    three = Halving(100, 5, 3, grace_period=5)  # rungs 10, 25, 75: rung 25's is 75, not 10
    assert three.rungs == [10, 25, 75]
    for i in range(6):  # the same order at every rung and at the end
        three.record(f"t{i}", [(10, float(i)), (25, 10.0 + i), (75, 20.0 + i), (100, 30.0 + i)])
    assert three.trusted(75) and three.agreement(75) > 0.8
    assert three.trusted(25)  # judged against 75 (were it 10, untrusted yet, 25 could not be trusted)
    assert three.trusted(10)  # and then 10 against 25: the chain

    def study(later_x: float) -> Halving:
        p = Halving(30, 2, 3, h_noise=2.0)
        for i in range(100):  # concordant everywhere (one late bloomer cannot spoil the order); best at 24: 119
            p.record(f"t{i}", [(8, float(i)), (24, 20.0 + i), (30, 30.0 + i)])
        p.record("x", [(8, 0.5), (24, later_x), (30, 120.0)])  # near last at 8, near the best at 24
        assert p.trusted(24)  # the rung above first, as the scheduler asks
        return p
    assert not study(117.0).trusted(8)  # exactly h_noise below the best: rung 8 would stop it, so no trust
    assert study(116.9).trusted(8)  # further below: rung 8 may stop it


def test_rungs_and_scored_epochs_at_their_edges():
    """Hand-worked: 16 epochs scored every 2nd, rf 3: the alignment rung is 12 (75% of 16), 12 / 3 = 4."""
    assert selection.rung_epochs(16, 2, 3, grace_period=4) == [4, 12]  # a division landing on the grace period
    assert selection.rung_epochs(16, 2, 3, grace_period=5) == [12]  # just above it: only the alignment rung
    assert selection.rung_epochs(16, 2, 3, grace_period=1) == [2, 4, 12]  # 12 / 9 = 1.3 -> 2 on the grid
    assert selection.rung_epochs(16, 2, 3, grace_period=12) == [12]  # at the alignment rung: that one rung
    assert selection.rung_epochs(16, 2, 3, grace_period=16) == []  # at the last epoch: no rung
    assert selection.recipe_epochs(4, 1, [1]) == (1, 4)  # a rung at the first epoch is scored
    assert selection.recipe_epochs(10, 1, [3], peak_every=5) == (3, 5, 10)  # the peak grid meets the last epoch
    assert selection.recipe_epochs(10, 2, [3], peak_every=4) == (4, 8, 10)  # rung 3 judged at 4, on the grid


def _live(trials: dict[str, list[tuple[int, float]]], final: dict[str, float], **kw) -> Halving:
    """A policy fed as a study feeds it: each trial's scored epochs in turn (on_result), then its final H."""
    p = Halving(30, 2, 3, **kw)  # rungs 8 and 24
    for tid, points in trials.items():
        for epoch, h in points:
            assert p.on_result(tid, epoch, h) == CONTINUE
    for tid, h in final.items():
        p.on_result(tid, 30, h)
    return p


def test_a_lower_rung_needs_exactly_trust_trials_pairs_and_an_agreement_at_least_trust():
    """Six trials in the same order at rungs 8 and 24 and at the end: rung 24 trusts itself (six
    unjudged), and rung 8 has exactly six pairs with it, enough. If one of the six skipped rung 8
    (its first score came at 24), five pairs are too few however well they agree. The agreement
    is the product of two lower bounds (Fisher's z, n = 6, z = 1.28), computed here by hand: a
    threshold exactly at it still trusts."""
    full = {f"t{i}": [(8, float(i)), (24, 10.0 + i)] for i in range(6)}
    final = {f"t{i}": 20.0 + i for i in range(6)}
    p = _live(full, final)
    assert p.trusted(24) and p.trusted(8)
    skipped = {**full, "t0": [(24, 10.0)]}
    q = _live(skipped, final)
    assert q.trusted(24) and len(q.recorded[8]) == 5 and not q.trusted(8)
    bound = math.tanh(math.atanh(0.999999) - 1.28 * 1.06 / math.sqrt(6 - 3))
    assert p.agreement(24) == pytest.approx(bound, abs=1e-12) and p.agreement(8) == pytest.approx(bound * bound, abs=1e-12)
    at = _live(full, final, trust=p.agreement(8))
    assert at.trusted(24) and at.trusted(8)  # exactly at the threshold
    above = _live(full, final, trust=math.nextafter(p.agreement(8), 1.0))
    assert above.trusted(24) and not above.trusted(8)  # a hair above it
