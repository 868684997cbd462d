"""The suite's shared short study end to end, and reports built from its Parquet, checked as
records, as HTML, and as a person sees them in headless Chromium. (One file: with pytest-xdist's
--dist loadfile, one worker runs the study once for both.)"""

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

from html import escape

import pandas as pd
import pyarrow.parquet as pq
import pytest

from gzsl.report import build_comparison, write_report
from gzsl.report import figures as fig
from gzsl.report import records as rec
from gzsl.report.screenshot import find_chromium, render
from gzsl.results import ResultStore, schema
from tests.test_study import optuna_states, run_tune


def test_a_short_study_end_to_end(short_study):
    """The shared study (conftest.short_study). A searched sampling and a fixed kl_weight reach every
    table. H is scored only where a decision reads it, the rungs 4 and 12 and the last epoch 16
    (eval_at), and no other epoch records one: not in Parquet, not as Optuna's intermediate values
    (which ASHA's rungs also see)."""
    study, results, out = short_study
    trials = pd.read_parquet(results / "trials.parquet")
    epochs = pd.read_parquet(results / "epochs.parquet")
    final = pd.read_parquet(results / "final.parquet")
    meta = pd.read_parquet(results / "study.parquet")
    # The documented schema, readable by pyarrow as one table per folder of parts.
    assert pq.read_schema(next((results / "trials.parquet").glob("part-*.parquet"))).names == schema("trials").names
    assert list(epochs.columns) == schema("epochs").names and list(final.columns) == schema("final").names
    assert list(meta.columns) == schema("study").names
    assert (meta.kl_weight[0], meta.beta[0], meta.sampling[0]) == (0.5, 3.43, "searched")  # beta: TrainConfig's default
    assert meta.classifier[0] == "fast"
    assert len(trials) == 6 and trials.trial_id.is_unique
    # Which trials ASHA stops depends on the order they reach its rungs (two run at once); what holds
    # in any order: the trial that leads the highest rung (epoch 12) is never stopped, so at least
    # one trial completes. The rule is unit-tested in test_selection.
    assert set(trials.status) <= {"completed", "pruned"}
    scored_at = epochs.dropna(subset=["val_H"])
    rung_12 = scored_at[scored_at.epoch == 12].set_index("trial_id").val_H
    assert (trials.set_index("trial_id").status[rung_12[rung_12 == rung_12.max()].index] == "completed").all()
    assert (trials[trials.status == "completed"].epochs_run == 16).all()
    assert (trials[trials.status == "pruned"].epochs_run < 16).all()
    assert len(epochs) == trials.epochs_run.sum()
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    scored = epochs.dropna(subset=["val_H"])
    assert json.loads(meta.eval_at[0]) == [4, 12, 16] and meta.peak_every[0] == 0
    assert set(scored.epoch) <= {4, 12, 16} and len(scored[scored.epoch == 4]) == 6  # every trial reaches rung 4
    assert epochs[~epochs.epoch.isin([4, 12, 16])].val_H.isna().all() and len(epochs[epochs.epoch == 1]) == 6
    assert set(trials.best_epoch) <= {4, 12, 16}
    assert trials.best_val_H.between(0, 100).all() and (trials.best_val_H >= trials.last_val_H - 1e-9).all()
    assert trials.node_id.str.len().gt(0).all()
    # Optuna saw pruned trials as PRUNED, with their intermediate values, and no trial is left RUNNING.
    states, ostudy = optuna_states(results, "mini")
    assert states.count("PRUNED") == (trials.status == "pruned").sum()
    assert states.count("COMPLETE") == (trials.status == "completed").sum()
    assert "RUNNING" not in states
    for t in ostudy.trials:
        tid = t.user_attrs["tune_trial_id"]
        assert sorted(t.intermediate_values) == sorted(scored[scored.trial_id == tid].epoch)
    searched = {t.user_attrs["tune_trial_id"]: t.params["sampling"] for t in ostudy.trials}
    assert dict(zip(trials.trial_id, trials.sampling)) == searched  # what Optuna proposed, as a string
    # The best 2 trials and the defaults, each retrained on one fresh validation split (other classes),
    # scored at its best epoch; the choice is made there (selection.confirmed, unit-tested below).
    confirm = pd.read_parquet(results / "confirm.parquet")
    assert list(confirm.columns) == schema("confirm").names
    ranked = trials[trials.status == "completed"].sort_values("best_val_H", ascending=False)
    expected = set(ranked.trial_id[:2]) | set(trials.trial_id[trials.start == "defaults"])
    assert set(confirm.trial_id) == expected and (confirm.val_split == 1).all() and len(confirm) == len(expected)
    # What the test expects, worked out here from the rows (not by selection.refit_epoch or confirmed):
    # the peak epoch where it leads the last by more than 2 H, else the last epoch; the defaults kept
    # unless a finalist's fresh-split H beats theirs by more than 2.
    def scored_at(t):
        return int(t.best_epoch) if t.best_val_H - t.last_val_H > 2.0 else int(t.epochs_run)

    by_id = trials.set_index("trial_id")
    assert dict(zip(confirm.trial_id, confirm.scored_epoch)) == {t: scored_at(by_id.loc[t]) for t in expected}
    assert confirm.val_H.between(0, 100).all() and (confirm.status == "completed").all()
    fresh = dict(zip(confirm.trial_id, confirm.val_H))
    defaults = trials.trial_id[trials.start == "defaults"].iloc[0]
    challenger = max((t for t in fresh if t != defaults), key=fresh.get)
    chosen = challenger if fresh[challenger] > fresh[defaults] + 2.0 else defaults
    best = by_id.loc[chosen].to_dict() | {"trial_id": chosen}
    assert f"trial {chosen}" in out.split("confirming")[1] and re.search(rf"trial {chosen}.*<- chosen", out)
    # Final refit of the chosen trial, 2 seeds, scored on test.
    assert len(final) == 2 and (final.latent_size == best["latent_size"]).all() and final.seed.nunique() == 2
    # Validation-chosen stopping: the refit trains the 16-epoch schedule up to the chosen trial's best
    # epoch, or to its end where the peak is within h_noise of the last epoch (refit_epoch, unit-tested).
    assert (final.epochs == 16).all() and (final.scored_epoch == scored_at(by_id.loc[chosen])).all()
    assert (final.sampling[0], final.kl_weight[0], final.lr[0]) == (best["sampling"], 0.5, pytest.approx(best["lr"]))
    # CADA-VAE's recipe (test_*) and the fast classifier (fast_test_*), each a consistent U/S/H triple.
    for prefix in ("test_", "fast_test_"):
        u, s, h = (final[f"{prefix}{k}"] for k in "USH")
        # 0 is possible: the refit scores the chosen trial's best epoch, which may be an early one.
        harmonic = (2 * u * s / (u + s)).where(u + s > 0, 0.0)
        assert ((0 <= h) & (h <= 100)).all() and h.values == pytest.approx(harmonic.values)
    recipe, fast = final[["test_U", "test_S"]].to_numpy(), final[["fast_test_U", "fast_test_S"]].to_numpy()
    assert (recipe != fast).any()  # two classifiers, two sets of numbers
    assert out.count("best H") == 6 and "best configuration:" in out and f"sampling={best['sampling']}" in out
    h = final.test_H
    assert f"test (mean ± std over 2 seeds), CADA-VAE classifier recipe: U {final.test_U.mean():.2f}" in out
    assert f"H {h.mean():.2f} ± {h.std():.2f}" in out and "nan" not in out
    assert "test (mean ± std over 2 seeds), fast classifier: U" in out
    for i in range(2):
        assert f"H {final.test_H[i]:.2f} (CADA-VAE classifier recipe, 23 epochs)" in out
        assert f"H {final.fast_test_H[i]:.2f} (fast classifier)" in out
    assert "report: reports/mini.html" in out and (results.parent / "reports" / "mini.html").is_file()
    # Each seed's model is saved, listed in final.parquet, and scores again what was recorded.
    from gzsl import predict

    assert sorted(final.model) == [f"models/seed{seed}.pt" for seed in sorted(final.seed)]
    assert sorted(p.name for p in (results / "models").iterdir()) == [f"seed{seed}.pt" for seed in sorted(final.seed)]
    assert f"models: 2 in {results}/models/ (python -m gzsl.predict --model {results}/models/seed{final.seed.min()}.pt)" in out
    row = final.sort_values("seed").iloc[0]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        assert predict.main(["--model", str(results / row.model)]) == 0
    again = json.loads(printed.getvalue())
    assert (again["U"], again["S"], again["H"], again["epoch"]) == \
        (round(row.test_U, 2), round(row.test_S, 2), round(row.test_H, 2), row.scored_epoch)
    # Running it again into the same folder asks for --resume, before starting Ray, and loses nothing.
    again = run_tune(study, results)
    assert again.returncode == 2 and "add --resume" in again.stderr and "Traceback" not in again.stderr
    assert len(pd.read_parquet(results / "trials.parquet")) == 6


@pytest.fixture(scope="module")
def study_results(short_study, tmp_path_factory):
    """A copy of the suite's real small study (local Ray, Optuna, ASHA, refit with 2 seeds), plus
    one fabricated errored trial whose error text is hostile HTML."""
    _, ran, out = short_study
    assert "report: reports/mini.html" in out  # the study wrote its report at the end
    results = tmp_path_factory.mktemp("report") / "results"
    shutil.copytree(ran, results)
    store = ResultStore(str(results))
    row = store.read("trials").iloc[0].to_dict()
    now = datetime.now(timezone.utc)
    row.update(trial_id="evil0001", trial_number=99, start="",  # a copy of any row: never of the defaults' label
               status="error", error="<script>alert('x')</script> & more",
               best_val_H=None, last_val_H=None, epochs_run=0, started_at=now, ended_at=now)
    store.write_part("trials", "evil0001", [row])
    return results


@pytest.fixture(scope="module")
def page_html(study_results, tmp_path_factory):
    out = tmp_path_factory.mktemp("page") / "rep.html"
    write_report(str(study_results), str(out))
    return out, out.read_text()


def test_records_match_the_parquet(study_results):
    r = rec.read_results(str(study_results))
    trials = pd.read_parquet(study_results / "trials.parquet")
    s = rec.summary(r)
    assert s.n_trials == 7 and s.counts["error"] == 1
    assert s.trial_epochs == trials.epochs_run.sum() and s.full_epochs == 7 * 16
    assert s.best["status"] == "completed"
    # The study's first trial evaluated method.md's defaults (inside this space: lr 1.5e-4 -> 1e-3).
    assert s.defaults["trial_number"] == 0 and s.defaults["start"] == "defaults"
    assert (s.defaults["alpha"], s.defaults["gamma"], s.defaults["lr"]) == (1.0, 1.0, 1e-3)
    assert list(trials.start[trials.trial_number > 0].unique()) in ([""], [])
    # 16 epochs, H every 2, grace 2, rf 3: the alignment rung 12 (75% of 16), 12 / 3 = 4; 4 / 3 is below 2.
    rungs = rec.asha_rungs(r)
    epochs = pd.read_parquet(study_results / "epochs.parquet")
    reached = epochs[(epochs.epoch == 12) & epochs.val_H.notna()].trial_id.nunique()
    assert [g.epoch for g in rungs] == [4, 12] and rungs[1].trusted == (reached >= 6)  # six trials: trusted
    curves = rec.learning_curves(r)
    assert len(curves) == 6  # the errored trial has no epochs
    assert {c.status for c in curves} == set(trials[trials.epochs_run > 0].status)
    f = rec.final_result(r)
    assert f.n_seeds == 2 and f.references == {}  # synthetic data: no published numbers
    final = pd.read_parquet(study_results / "final.parquet")
    recipe, fast = f.rows
    assert recipe.label == ("test U/S/H, CADA-VAE's classifier recipe (23 epochs, batch 32, the classifier's last epoch scored), "
                            "comparable to published rows") and recipe.published_recipe and f.recipe() is recipe
    assert (final.classifier_epochs == 23).all()  # synthetic data: CUB's epochs
    assert fast.label == "fast classifier (3 epochs at batch 2048), same latents" and not fast.published_recipe
    for row, prefix in ((recipe, "test_"), (fast, "fast_test_")):
        assert row.n_seeds == 2
        for k in "USH":
            assert row.mean[k] == pytest.approx(final[prefix + k].mean(), abs=1e-9)
            assert row.std[k] == pytest.approx(final[prefix + k].std(ddof=1), abs=1e-9)
    assert recipe.mean != fast.mean  # two classifiers, two sets of numbers
    assert f.settings == {"sampling": final.sampling[0], "kl_weight": 0.5,
                          "scored at epoch": f"{final.scored_epoch[0]} of 16"}
    h = rec.history(r)
    assert h.best_so_far == sorted(h.best_so_far) and len(h.value) == 7
    assert h.defaults_H == pytest.approx(s.defaults["best_val_H"]) and h.start.count("defaults") == 1
    # The history's best so far is the search's best; the summary's choice is the confirmation's
    # (selection.confirmed over confirm.parquet), one of the finalists it lists.
    done = r.trials[r.trials.status == "completed"]
    assert h.best_so_far[-1] == h.best_so_far_by_time[-1] == pytest.approx(done.best_val_H.max())
    # The choice, worked out here from the rows: the defaults, unless a finalist's fresh-split H beats
    # theirs by more than h_noise (2).
    fresh = dict(zip(r.confirm.trial_id, r.confirm.val_H))
    defaults = r.trials.trial_id[r.trials.start == "defaults"].iloc[0]
    challenger = max((t for t in fresh if t != defaults), key=fresh.get)
    assert s.best["trial_id"] == (challenger if fresh[challenger] > fresh[defaults] + 2.0 else defaults)
    finalists = rec.confirm_rows(r)
    assert s.best["trial_id"] in {x.trial_id for x in finalists} and len(finalists) == len(r.confirm)
    assert [x.mean for x in finalists] == sorted((x.mean for x in finalists), reverse=True)
    assert {x.trial_id: x.split_H[1] for x in finalists} == pytest.approx(dict(zip(r.confirm.trial_id, r.confirm.val_H)))
    assert s.confirmed == {x.trial_id: x.mean for x in finalists}
    bars = rec.timeline(r)
    for where in {b.lane for b in bars}:  # trials sharing a slot never overlap
        lane = sorted((b.start, b.end) for b in bars if b.lane == where)
        assert all(a[1] <= b[0] for a, b in zip(lane, lane[1:]))
    assert len({b.lane for b in bars}) >= 2  # two trials ran at once on this node


def test_figures_have_one_trace_per_thing_they_show(study_results):
    r = rec.read_results(str(study_results))
    curves = rec.learning_curves(r)
    assert len(fig.learning_curves(curves, [rec.Rung(2, True), rec.Rung(6, False)]).data) == len(curves)
    h = rec.history(r)
    history = fig.optimization_history(h)
    # each status by number and by time, two best-so-far lines, the starting points; the defaults' H a line
    assert len(history.data) == 2 * len(set(h.status)) + 3
    assert [round(shape.y0, 6) for shape in history.layout.shapes] == [round(h.defaults_H, 6)] * 2
    by_time = [trace for trace in history.data if trace.xaxis == "x2" and trace.mode == "markers"]
    assert sum(len(trace.x) for trace in by_time) == len(h.value)  # every trial in the wall-clock panel
    assert len(fig.timeline(rec.timeline(r)).data) == 7
    params = rec.searched_params(r)
    assert params == ["alpha", "gamma", "latent_size", "lr", "sampling"]  # a searched categorical too
    slices = fig.slices(r, params)
    assert slices.layout.xaxis.type == "log" and slices.layout.xaxis3.type != "log"  # alpha log, latent not
    dims = fig.parallel_coordinates(r, params).data[0].dimensions
    assert len(dims) == len(params) + 1
    assert list(dims[4].ticktext) == sorted(set(r.trials.sampling)) and set(dims[4]["values"]) <= {0, 1}
    assert rec.importance(r).params == [] or "sampling" in rec.importance(r).params


def expected_figures(results) -> int:
    """history, curves, parallel coordinates, slices, timeline, and importance when computable."""
    return 5 + bool(rec.importance(rec.read_results(str(results))).params)


def test_page_is_self_contained_escaped_and_complete(page_html, study_results):
    _, html = page_html
    assert "Validation H (fast classifier) drives the search" in html  # the study's [training] classifier
    for section in ("summary", "final", "history", "curves", "params", "timeline", "trials"):
        assert f'<section id="{section}">' in html
    assert html.count("Plotly.newPlot(") == expected_figures(study_results)
    if expected_figures(study_results) == 5:
        assert "Importance not computed: needs at least 3 completed trials" in html
    # plotly.js is embedded once, in the head; it mentions map-tile URLs it never fetches for our charts
    # (the browser test checks that no request leaves the file).
    bundle_start = html.index('<script type="text/javascript">')
    markup = html[:bundle_start] + html[html.index("</script>", bundle_start):]
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", markup)  # no network fetches
    assert "<script src" not in markup
    assert "<script>alert('x')</script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in html
    assert 'id="trial-evil0001"' in html
    s = rec.summary(rec.read_results(str(study_results)))
    d, b = s.confirmed[s.defaults["trial_id"]], s.confirmed[s.best["trial_id"]]
    verdict = (f"defaults: H {d:.2f} on fresh validation splits; chosen: H {b:.2f} ({b - d:+.2f})"
               if s.best["trial_id"] != s.defaults["trial_id"] else
               f"defaults: H {d:.2f} on fresh validation splits; chosen: the defaults themselves")
    assert verdict in html
    confirm = html[html.index('<section id="confirm">'):html.index('<section id="history">')]
    assert confirm.count("(chosen)") == 1 and f'href="#trial-{s.best["trial_id"]}"' in confirm
    assert confirm.count("<tr") == 1 + len(s.confirmed)
    final = html[html.index('<section id="final">'):html.index('<section id="confirm">')]
    f = rec.final_result(rec.read_results(str(study_results)))
    labels = [escape(row.label) for row in f.rows]
    assert final.count('class="ours"') == 2 and final.index(labels[0]) < final.index(labels[1])
    for row in f.rows:
        assert f"{row.mean['H']:.1f} ± {row.std['H']:.1f}" in final
    refit = pd.read_parquet(study_results / "final.parquet")
    assert f"(sampling {refit.sampling[0]}, kl_weight 0.5, scored at epoch {refit.scored_epoch[0]} of 16)" in final


def test_comparison_puts_studies_side_by_side(study_results):
    r = rec.read_results(str(study_results))
    html = build_comparison([r, r._replace(name="second")])
    assert html.count("<tr>") >= 3 and "second" in html and "Plotly.newPlot(" in html


def test_missing_results_is_one_line_exit_2(tmp_path):
    p = subprocess.run([sys.executable, "-m", "gzsl.report", "--results", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and "no trials.parquet" in p.stderr


CHROMIUM = find_chromium()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_page_draws_in_headless_chromium(page_html, study_results, tmp_path):
    path, _ = page_html
    n = expected_figures(study_results)
    first = []

    seen = []

    shown = {}

    def sort_by_best_h(page):  # a person clicks a column header: the table sorts
        seen.append(page.locator(".verdict").inner_text())
        shown["final"] = page.locator("#final tr.ours").first.locator("td").all_inner_texts()
        heads = page.locator("#trials thead th").all_inner_texts()
        shown["trials"] = {r.get_attribute("id"): dict(zip(heads, r.locator("td").all_inner_texts()))
                           for r in page.locator("#trials tbody tr").all()}
        page.locator("#trials th", has_text="best val H").click()
        first.append(page.locator("#trials tbody tr").first.get_attribute("id"))

    shot = tmp_path / "report.png"
    r = render(path, shot, min_plots=n, before_shot=sort_by_best_h)
    assert r.errors == [] and r.external_requests == []
    assert r.plots == n and r.drawn >= n
    assert r.table_rows == 7
    assert first == ["trial-evil0001"]  # ascending sort puts the trial without an H first
    assert seen[0].startswith("defaults: H ") and "chosen: " in seen[0]  # what a person reads first
    # What a person reads, against the Parquet files read here (pandas, not the report's records):
    # the refit's test U, S, H as mean ± std over seeds (CADA-VAE's recipe, the first row), and
    # each trial's status, best val H and epochs.
    final = pd.read_parquet(study_results / "final.parquet")
    assert shown["final"][1:] == [f"{final[f'test_{k}'].mean():.1f} ± {final[f'test_{k}'].std():.1f}" for k in "USH"]
    trials = pd.read_parquet(study_results / "trials.parquet").set_index("trial_id")
    assert set(shown["trials"]) == {f"trial-{t}" for t in trials.index}
    for tid, row in trials.iterrows():
        cells = shown["trials"][f"trial-{tid}"]
        assert (cells["trial"], cells["status"], cells["epochs"]) == (tid, row.status, str(row.epochs_run))
        assert cells["best val H"] == ("" if pd.isna(row.best_val_H) else f"{row.best_val_H:.2f}")
    assert shot.stat().st_size > 50_000


def test_importance_ranks_the_parameter_that_drives_h():
    """fANOVA on completed trials only: H here depends on lr alone."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = 24
    lr = 10 ** rng.uniform(-4, -2, n)
    now = pd.Timestamp.now(tz="UTC")
    trials = pd.DataFrame({
        "trial_id": [f"t{i}" for i in range(n)], "trial_number": range(n),
        "status": ["completed"] * 20 + ["pruned"] * 4, "alpha": rng.uniform(0.1, 10, n),
        "gamma": rng.uniform(0.1, 10, n), "lam": rng.uniform(0.5, 10, n), "latent_size": rng.choice([16, 64], n),
        "lr": lr, "last_val_H": 50 + 10 * np.log10(lr), "best_val_H": 50 + 10 * np.log10(lr),
        "epochs_run": [10] * 20 + [2] * 4, "started_at": now, "ended_at": now})
    space = {"alpha": {"low": 0.1, "high": 10, "log": True}, "gamma": {"low": 0.1, "high": 10, "log": True},
             "lam": {"low": 0.5, "high": 10, "log": True}, "latent_size": {"choices": [16, 64]},
             "lr": {"low": 1e-4, "high": 1e-2, "log": True}}
    r = rec.StudyResults("synthetic", {"space": space, "epochs": 10}, trials, pd.DataFrame(), pd.DataFrame())
    imp = rec.importance(r)
    assert imp.params[0] == "lr" and imp.importance[0] > 0.8
    assert len(rec.optuna_study(r).trials) == 20  # pruned trials are left out
    assert len(fig.importance(imp).data[0].x) == 5


def test_watch_rewrites_the_page_with_what_lands_and_never_half_written(study_results, tmp_path):
    """A trial that lands while the page is watched appears on it; every look at the file finds a
    whole page. Waits on what happens, never on a count of rewrites: the deadline only bounds a
    failure, however slow this machine is."""
    results = tmp_path / "results"
    shutil.copytree(study_results, results)
    out = tmp_path / "watched.html"
    proc = subprocess.Popen([sys.executable, "-m", "gzsl.report", "--results", str(results), "--out", str(out),
                             "--watch", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def page_with(text):
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if out.exists():
                html = out.read_text()
                assert html.rstrip().endswith("</html>")  # never a half-written page
                if text in html:
                    return html
            time.sleep(0.2)
        pytest.fail(f"no page with {text!r} within 300 s (watcher exit {proc.poll()})")

    try:
        assert "late0001" not in page_with("trial-evil0001")
        store = ResultStore(str(results))
        row = store.read("trials").iloc[0].to_dict()
        row.update(trial_id="late0001", trial_number=100, start="", status="error", error="landed late",
                   best_val_H=None, last_val_H=None, epochs_run=0)
        store.write_part("trials", "late0001", [row])
        assert "landed late" in page_with("trial-late0001")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".watched")]  # no temp files left


def test_watch_started_before_the_first_trial_waits_for_it(study_results, tmp_path):
    results, out = tmp_path / "later", tmp_path / "later.html"
    proc = subprocess.Popen([sys.executable, "-m", "gzsl.report", "--results", str(results), "--out", str(out),
                             "--watch", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []  # the watcher's lines, read as they come: the page is written just before its line
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 60
        while not lines and time.time() < deadline:  # printed once the first look found nothing
            time.sleep(0.1)
        assert lines and proc.poll() is None, (lines, proc.poll())  # still watching, not "exit 2"
        shutil.copytree(study_results, results)  # the study's first trials land
        deadline = time.time() + 60
        while not any(line.startswith("report: ") for line in lines) and time.time() < deadline:
            time.sleep(0.2)
        assert out.exists() and proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=10)
    assert lines[0].startswith("waiting:") and "no trials.parquet results there yet" in lines[0]
    assert "".join(lines).count("waiting:") == 1 and any(line.startswith("report: ") for line in lines)


def test_compare_cli_writes_one_page_for_several_studies(study_results, tmp_path):
    out = tmp_path / "cmp.html"
    p = subprocess.run([sys.executable, "-m", "gzsl.report", "--compare", str(study_results), str(study_results),
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    html = out.read_text()
    assert "Studies side by side" in html and html.count("<b>mini</b>") == 2


def test_importance_falls_back_to_the_first_asha_rung_when_few_trials_complete():
    """Two completed trials are too few for fANOVA: it then explains H at epoch 5 (the first
    rung) over all trials. H at epoch 5 depends on gamma alone here; the final H of the two
    completed trials says nothing."""
    import numpy as np

    rng = np.random.default_rng(1)
    n = 16
    gamma = 10 ** rng.uniform(-1, 1, n)
    now = pd.Timestamp.now(tz="UTC")
    trials = pd.DataFrame({
        "trial_id": [f"t{i}" for i in range(n)], "trial_number": range(n),
        "status": ["completed"] * 2 + ["pruned"] * (n - 2), "alpha": rng.uniform(0.1, 10, n),
        "gamma": gamma, "lam": rng.uniform(0.5, 10, n), "latent_size": rng.choice([16, 64], n),
        "lr": 10 ** rng.uniform(-4, -2, n), "last_val_H": 50.0, "best_val_H": 50.0,
        "epochs_run": [6] * 2 + [5] * (n - 2), "started_at": now, "ended_at": now})
    epochs = pd.DataFrame({"trial_id": np.repeat(trials.trial_id, 5), "epoch": np.tile(np.arange(1, 6), n),
                           "val_H": np.repeat(30 + 10 * np.log10(gamma), 5)})
    space = {"alpha": {"low": 0.1, "high": 10, "log": True}, "gamma": {"low": 0.1, "high": 10, "log": True},
             "lam": {"low": 0.5, "high": 10, "log": True}, "latent_size": {"choices": [16, 64]},
             "lr": {"low": 1e-4, "high": 1e-2, "log": True}}
    # 6 epochs: one rung, at 5 (75% of 6, rounded up), which judges once six trials reached it.
    meta = {"space": space, "epochs": 6, "grace_period": 5, "reduction_factor": 3, "early_stopping": True}
    imp = rec.importance(rec.StudyResults("few", meta, trials, epochs, pd.DataFrame()))
    assert imp.params[0] == "gamma" and imp.importance[0] > 0.8
    assert imp.basis == "H at epoch 5 (the lowest trusted rung) of all 16 trials; 2 completed"
    assert "epoch 5" in fig.importance(imp).layout.xaxis.title.text
    # Without ASHA (a FIFO study) there is no rung to fall back on.
    none = rec.importance(rec.StudyResults("few", {**meta, "early_stopping": False}, trials, epochs, pd.DataFrame()))
    assert none.params == [] and "needs at least 3 completed trials, this study has 2" in none.note


def _final_rows(n: int, seed0: int, h: float) -> list[dict]:
    return [{"seed": seed0 + i, "test_U": h + 2 * i, "test_S": h + 10, "test_H": h + i, "status": "completed",
             "fast_test_U": h + 2 * i - 1, "fast_test_S": h + 10, "fast_test_H": h + i - 1, "sampling": "cada",
             "kl_weight": 0.25, "classifier_epochs": 23, "epochs": 30, "scored_epoch": 12,
             "model": f"models/seed{seed0 + i}.pt"} for i in range(n)]


def test_a_refit_seed_that_diverged_is_shown_not_silently_averaged():
    from gzsl.report import _final_html

    rows = _final_rows(3, 1000, 50.0)
    rows[1].update(status="diverged", test_U=0.0, test_S=0.0, test_H=0.0, fast_test_H=0.0, model=None)
    r = rec.StudyResults("d", {"dataset": "synth-small"}, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(rows))
    f = rec.final_result(r)
    assert f.failed == [1001] and f.rows[0].mean["H"] == pytest.approx((50 + 0 + 52) / 3)
    html = _final_html(r)
    assert "Seed(s) 1001 did not complete" in html and html.count('>diverged<') == 1
    assert "models/seed1002.pt" in html and "python -m gzsl.predict --model" in html


def test_the_timeline_puts_a_packs_members_in_the_packs_own_slots():
    """A packed study: members of one pack overlap, each in a slot of its pack; a solo trial on the
    same node keeps its own lane."""
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    at = lambda s: t0 + pd.Timedelta(seconds=s)  # noqa: E731
    trials = pd.DataFrame([
        dict(trial_id="a", node_ip="10.0.0.1", node_id="n1", gpu_id="0", executor_id="gzsl-s-1234abcd-executor-0",
             started_at=at(0), ended_at=at(10), status="completed"),
        dict(trial_id="b", node_ip="10.0.0.1", node_id="n1", gpu_id="0", executor_id="gzsl-s-1234abcd-executor-0",
             started_at=at(1), ended_at=at(5), status="pruned"),
        dict(trial_id="c", node_ip="10.0.0.1", node_id="n1", gpu_id="0", executor_id="gzsl-s-1234abcd-executor-0",
             started_at=at(6), ended_at=at(9), status="pruned"),
        dict(trial_id="d", node_ip="10.0.0.1", node_id="n1", gpu_id="", executor_id="",
             started_at=at(2), ended_at=at(4), status="completed"),
    ])
    bars = {b.trial_id: b.lane for b in rec.timeline(rec.StudyResults("s", {}, trials, None, None))}
    assert bars == {"a": "10.0.0.1 gpu 0 executor 0 slot 1", "b": "10.0.0.1 gpu 0 executor 0 slot 2",
                    "c": "10.0.0.1 gpu 0 executor 0 slot 2", "d": "10.0.0.1 cpu slot 1"}


def test_the_cost_counts_seconds_training_and_evaluation_apart_and_a_pack_member_its_share():
    """Worked out by hand: a (alone) trains 1 s an epoch and evaluates 2 s every second epoch; b is
    stopped after epoch 2 of 4, so it saves 2 epochs at its 2 s of training and one evaluation (epoch
    4) at its 3 s; c and d share executor x, whose 10 s epochs count 5 s to each."""
    t0 = pd.Timestamp("2026-12-06 12:00", tz="UTC")
    trials = pd.DataFrame({"trial_id": list("abcd"), "trial_number": range(4),
                           "status": ["completed", "pruned", "completed", "completed"], "epochs_run": [4, 2, 2, 2],
                           "executor_id": ["", "", "x", "x"], "started_at": [t0] * 4,
                           "ended_at": [t0 + pd.Timedelta(seconds=100)] * 4})
    epochs = pd.DataFrame({"trial_id": list("aaaabbccdd"), "epoch": [1, 2, 3, 4, 1, 2, 1, 2, 1, 2],
                           "seconds": [1, 3, 1, 3, 2, 5, 10, 10, 10, 10],
                           "eval_seconds": [0, 2, 0, 2, 0, 3, 0, 0, 0, 0], "val_H": [None, 1.0] * 5})
    r = rec.StudyResults("c", {"epochs": 4, "eval_every": 2}, trials, epochs,
                         pd.DataFrame({"seconds": [7.0]}), pd.DataFrame({"seconds": [5.0, 6.0]}))
    c = rec.cost(r)
    assert (c.train_s, c.eval_s) == (4 + 4 + 4 * 5, 4 + 3)
    assert (c.saved_epochs, c.saved_s) == (2, 2 * 2 + 1 * 3)
    assert (c.confirm_s, c.refit_s) == (11.0, 7.0)
