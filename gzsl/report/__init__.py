"""Reports: a study's Parquet results as one Plotly HTML page a researcher reads.

    python -m gzsl.report --study demo                  # results/demo -> reports/demo.html
    python -m gzsl.report --compare demo synth_cub      # several studies side by side

Records are computed from Parquet alone (records.py), drawn (figures.py) and
assembled into a self-contained page (page.py).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import optuna

from gzsl import hyperparams, registry
from gzsl.report import figures as fig
from gzsl.report import page
from gzsl.report import records as rec
from gzsl.selection import chosen_val_H, refit_epoch

optuna.logging.set_verbosity(optuna.logging.WARNING)


def build_report(r: rec.StudyResults) -> str:
    s = rec.summary(r)
    params = rec.searched_params(r)
    sections = [("summary", "Summary", _summary_html(s, r)),
                ("final", "Final test result", _final_html(r)),
                ("confirm", "Finalists on fresh validation splits", _confirm_html(r, s)),
                ("history", "Optimization history", page.figure_html(fig.optimization_history(rec.history(r)),
                                                                      "fig-history")),
                ("curves", "Learning curves", page.figure_html(
                    fig.learning_curves(rec.learning_curves(r), rec.asha_rungs(r)), "fig-curves")),
                ("params", "Hyperparameters", _params_html(r, params)),
                ("timeline", "Trial timeline", page.figure_html(fig.timeline(rec.timeline(r)), "fig-timeline")),
                ("trials", "All trials", _trials_html(r, params))]
    by = {"cada": " (CADA-VAE's classifier recipe)", "fast": " (fast classifier)"}.get(r.meta.get("classifier"), "")
    subtitle = (f"dataset {s.dataset}, split protocol {s.split}; {s.n_trials} trials. "
                f"Validation H{by} drives the search; test images are used only by the final refit.")
    return page.page(f"Study {s.study}", sections, subtitle)


def write_report(results: str, out: str, study: str | None = None) -> Path:
    return page.write_atomic(out, build_report(rec.read_results(results, study)))


def _dur(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _summary_html(s: rec.Summary, r: rec.StudyResults) -> str:
    counts = ", ".join(f"{escape(k)} {v}" for k, v in sorted(s.counts.items()))
    saved = 1 - s.trial_epochs / s.full_epochs if s.full_epochs else 0.0
    cards = [("dataset", escape(str(s.dataset))), ("trials", f"{s.n_trials}"), ("by status", counts),
             ("wall time", f"{s.wall_seconds / 60:.1f} min"),
             ("trial-epochs trained", f"{s.trial_epochs} of {s.full_epochs}")]
    c = rec.cost(r)
    cards.append(("trial-seconds trained", f"{_dur(c.spent_s)} <small>(training {_dur(c.train_s)}, "
                                           f"evaluation {_dur(c.eval_s)})</small>"))
    saved_s = c.saved_s / (c.spent_s + c.saved_s) if c.spent_s + c.saved_s else 0.0
    cards.append(("saved by early stopping", f"{saved:.0%} <small>of trial-epochs, ~{saved_s:.0%} of trial-seconds "
                                             f"({_dur(c.saved_s)})</small>"))
    if c.confirm_s or c.refit_s or c.audit_s:
        cards.append(("confirmation, refit, audit", f"{_dur(c.confirm_s)}, {_dur(c.refit_s)}, {_dur(c.audit_s)}"))
    a = rec.audit(r)
    cards.append(("stops audited", f"{a.audited} <small>of {a.stops}; would have beaten the chosen by more than "
                                   f"h_noise: {len(a.found)}</small>"))
    rungs = rec.asha_rungs(r)
    if rungs:
        trusted = [str(g.epoch) for g in rungs if g.trusted]
        cards.append(("rungs trusted", f"{', '.join(trusted) or 'none'} <small>(of {', '.join(str(g.epoch) for g in rungs)})"
                                           "</small>"))
    if s.defaults is not None:
        d = s.defaults
        shown = f"{d['best_val_H']:.2f}" if d["best_val_H"] is not None and d["best_val_H"] == d["best_val_H"] else "none"
        cards.append(("defaults: val H", f'<a href="#trial-{escape(d["trial_id"])}">{shown}</a> '
                                         f'<small>({escape(d["status"])})</small>'))
    if s.best is not None:
        cards.append(("chosen: val H", f"{chosen_val_H(s.best):.2f}"))
        if s.best["trial_id"] in s.confirmed:
            cards.append(("chosen: fresh splits H", f"{s.confirmed[s.best['trial_id']]:.2f}"))
    paths = r.trials["path"].dropna().unique() if "path" in r.trials else []
    if len(paths):
        cards.append(("trained with", escape(" / ".join(sorted({p.split(";")[0] for p in paths})))))
    html = '<div class="cards">' + "".join(f"<div class=\"card\"><b>{v}</b><span>{escape(k)}</span></div>"
                                          for k, v in cards) + "</div>" + _verdict_html(s) + _fallback_html(paths)
    if s.best is None:
        return html + '<p class="note">No trial finished with a score.</p>'
    b = s.best
    rows = [[p, b[p]] for p in hyperparams.names()]
    rows.append(["best epoch (validation H)", b["best_epoch"]])
    rows.append(["refit epoch (the refit stops and scores there: the best epoch unless within h_noise of the last)",
                 refit_epoch(b, rec.noise(r.meta)) or b["epochs_run"]])
    link = f'<a href="#trial-{escape(b["trial_id"])}">{escape(b["trial_id"])}</a>'
    return (html + f"<p>Chosen configuration (trial {link}, {escape(b['status'])}, {int(b['epochs_run'])} epochs):</p>"
            + page.table_html(["parameter", "value"], rows, left={"parameter"}, sortable=False))


def _fallback_html(paths) -> str:
    """A warning where a fast path failed its self-check (gzsl.fastpaths) in some trial's process."""
    fell = sorted({p.split("; fell back: ", 1)[1] for p in paths if "; fell back: " in p})
    if not fell:
        return ""
    return ('<p class="warning"><b>A fast path fell back to eager</b> (it disagreed with the eager path or failed '
            "on this machine; those trials ran correctly, only slower): " + escape("; ".join(fell)) + "</p>")


def _verdict_html(s: rec.Summary) -> str:
    """One line: did tuning beat method.md's defaults on validation H (on the fresh splits where
    the finalists were confirmed there)?"""
    d, b = s.defaults, s.best
    if d is None or b is None or d["best_val_H"] is None or d["best_val_H"] != d["best_val_H"]:
        return ""
    if d["trial_id"] in s.confirmed and b["trial_id"] in s.confirmed:
        dh, bh = s.confirmed[d["trial_id"]], s.confirmed[b["trial_id"]]
        if b["trial_id"] == d["trial_id"]:
            text = (f"defaults: H {dh:.2f} on fresh validation splits; chosen: the defaults themselves "
                    "(no finalist beat them there by more than the seed noise)")
        else:
            text = f"defaults: H {dh:.2f} on fresh validation splits; chosen: H {bh:.2f} ({bh - dh:+.2f})"
        return f'<p class="verdict"><b>{escape(text)}</b></p>'
    dh, bh = float(d["best_val_H"]), float(chosen_val_H(b))
    if b["trial_id"] == d["trial_id"]:
        text = f"defaults: H {dh:.2f}; chosen: the defaults themselves (no other trial beat them on validation)"
    else:
        text = f"defaults: H {dh:.2f}; chosen: H {bh:.2f} ({bh - dh:+.2f} on validation)"
    return f'<p class="verdict"><b>{escape(text)}</b></p>'


def _final_html(r: rec.StudyResults) -> str:
    f = rec.final_result(r)
    if f is None:
        return '<p class="note">No final refit in these results (the study was run with --no-refit, or is still running).</p>'
    rows = [[("html", f"<b>this study (Disentangled-VAE)</b>: {escape(row.label)}"),
             *[f"{row.mean[k]:.1f} ± {row.std[k]:.1f}" for k in "USH"]] for row in f.rows]
    rows += [[name, u, s, h] for name, (u, s, h) in f.references.items()]
    settings = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in f.settings.items())
    note = (f"The chosen configuration retrained on all of trainval with {f.n_seeds} seeds"
            + (f" ({settings})" if settings else "") + ", scored on test (mean ± standard deviation over seeds).")
    if f.recipe() is not None:
        note += (" Each seed's model is scored with CADA-VAE's classifier recipe and with a fast classifier, "
                 "both fit on the same sampled latents.")
    if f.failed:
        note += (f" Seed(s) {', '.join(str(seed) for seed in f.failed)} did not complete (see the table below); "
                 "the mean counts each as H 0.")
    if not f.references:
        published = ", ".join(d.name for d in registry.DATASETS.values() if d.references)
        note += f" No published reference numbers: this dataset is not one of {published}."
    else:
        note += " Reference rows: published results (method.md)."
    return (f'<p class="note">{escape(note)}</p>'
            + page.table_html(["method", "U", "S", "H"], rows, left={"method"},
                              row_classes=["ours"] * len(f.rows) + [""] * len(f.references), sortable=False)
            + "<p>Each seed of the refit (<code>model</code>: its saved model in the results folder, for "
              "<code>python -m gzsl.predict --model</code>):</p>"
            + page.table_html(list(f.seeds.columns), f.seeds.values.tolist(), left={"status", "model"}, sortable=False))


def _confirm_html(r: rec.StudyResults, s: rec.Summary) -> str:
    rows = rec.confirm_rows(r)
    if not rows:
        return ("<p class=\"note\">No confirmation: the search's best trial was chosen as it is ([confirm] top or "
                "splits 0, --no-confirm, or the study is still running).</p>")
    splits = sorted({k for x in rows for k in x.split_H})
    chosen = s.best["trial_id"] if s.best else None
    table = []
    for x in rows:
        link = ("html", f'<a href="#trial-{escape(x.trial_id)}">{escape(x.trial_id)}</a>'
                        + (" <b>(chosen)</b>" if x.trial_id == chosen else ""))
        table.append([link, x.start, x.search_H, *[x.split_H.get(k) for k in splits],
                      "incomplete" if x.mean is None else x.mean])
    note = (f"The search's best trials and method.md's defaults, each retrained on {len(splits)} other set(s) of "
            "validation classes (drawn from the training classes) and scored at its refit epoch, as the refit "
            "would. The search's own H is the maximum of many noisy numbers; the choice is made here: a "
            f"finalist replaces the defaults only when its mean is ahead by more than h_noise = {rec.noise(r.meta):g} H.")
    return (f'<p class="note">{escape(note)}</p>'
            + page.table_html(["trial", "start", "search val H", *[f"split {k} val H" for k in splits], "mean"],
                              table, left={"trial", "start"}, sortable=False,
                              row_classes=["ours" if x.trial_id == chosen else "" for x in rows]))


def _params_html(r: rec.StudyResults, params: list[str]) -> str:
    imp = rec.importance(r)
    parts = []
    if imp.params:
        parts.append(page.figure_html(fig.importance(imp), "fig-importance"))
    else:
        parts.append(f'<p class="note">Importance not computed: {escape(imp.note)}.</p>')
    parts.append(page.figure_html(fig.parallel_coordinates(r, params), "fig-parallel"))
    parts.append(page.figure_html(fig.slices(r, params), "fig-slices"))
    return "".join(parts)


def _trials_html(r: rec.StudyResults, params: list[str]) -> str:
    t = r.trials
    cols = ["#", "trial", "start", "status", *params, "best val H", "best epoch", "last val H", "epochs", "seconds",
            "ran on", "path", "error"]
    rows = []
    for _, x in t.iterrows():
        where = (x.node_ip or "") + (f" gpu {x.gpu_id}" if isinstance(x.gpu_id, str) and x.gpu_id else "")
        if isinstance(x.get("executor_id"), str) and x.executor_id:
            where += f" executor {x.executor_id.rsplit('-', 1)[-1]}"
        rows.append([int(x.trial_number), x.trial_id, x.start or "", x.status, *[x[p] for p in params], x.best_val_H,
                     x.best_epoch, x.last_val_H, int(x.epochs_run), x.seconds, where, x.get("path") or "", x.error])
    return page.table_html(cols, rows, left={"trial", "start", "status", "ran on", "path", "error"},
                           row_ids=[f"trial-{tid}" for tid in t.trial_id],
                           row_classes=[f"status-{s}" for s in t.status])


# --------------------------------------------------------------------------- comparison


def build_comparison(studies: list[rec.StudyResults]) -> str:
    rows, imp_rows = [], []
    for r in studies:
        s, f = rec.summary(r), rec.final_result(r)
        best = s.best
        best_h = chosen_val_H(best) if best else None
        cada = (f.references.get("CADA-VAE") if f else None) or rec.references(str(s.dataset)).get("CADA-VAE")
        ours = f.recipe() if f else None
        test_h = "" if ours is None else f"{ours.mean['H']:.1f} ± {ours.std['H']:.1f}" + (
            "" if ours.published_recipe else " (fast classifier)")
        rows.append([("html", f"<b>{escape(r.name)}</b>"), s.dataset, s.n_trials, best_h, test_h,
                     cada[2] if cada else None,
                     (ours.mean["H"] - cada[2]) if (ours and ours.published_recipe and cada) else None,
                     *[best.get(p) if best else None for p in hyperparams.names()]])
        imp = rec.importance(r)
        imp_rows.append((r.name, dict(zip(imp.params, imp.importance))))
    import plotly.graph_objects as go

    bar = go.Figure()
    for p in hyperparams.names():
        bar.add_trace(go.Bar(name=escape(p), x=[escape(n) for n, _ in imp_rows], y=[d.get(p, 0.0) for _, d in imp_rows]))
    bar.update_layout(barmode="group")
    bar = fig._layout(bar, "Hyperparameter importance per study (fANOVA on final H; on H at the lowest trusted rung "
                           "where fewer than 3 trials completed)", height=380)
    table = page.table_html(["study", "dataset", "trials", "best val H", "test H (CADA-VAE's classifier recipe)",
                             "CADA-VAE H", "test H - CADA-VAE",
                             *[f"best {p}" for p in hyperparams.names()]], rows, left={"study", "dataset"})
    sections = [("table", "Studies side by side", table), ("importance", "Importance per study",
                                                           page.figure_html(bar, "fig-importance-compare"))]
    return page.page("Study comparison: " + ", ".join(r.name for r in studies), sections,
                     "Best validation H, test H of the refit best configuration (CADA-VAE's classifier recipe), "
                     "and the CADA-VAE reference.")


def write_comparison(results: list[str], out: str) -> Path:
    return page.write_atomic(out, build_comparison([rec.read_results(u) for u in results]))
