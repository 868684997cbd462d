"""Plotly figures from the report's records. Text that came from the results (study,
parameter, trial names) is HTML-escaped before it reaches a figure: Plotly renders
titles and labels as HTML."""

from __future__ import annotations

import re

from html import escape

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gzsl import hyperparams
from gzsl.report import records as rec

STATUS_COLORS = {"completed": "#1f77b4", "pruned": "#b0b0b0", "diverged": "#d62728", "error": "#9467bd"}


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=escape(title), height=height, margin=dict(l=60, r=20, t=60, b=50),
                      template="plotly_white", legend=dict(orientation="h", y=-0.18))
    return fig


def optimization_history(h: rec.History) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("by trial number", "by wall-clock time"))
    for status in dict.fromkeys(h.status):
        idx = [i for i, s in enumerate(h.status) if s == status]
        for col, x, what in ((1, h.trial_number, "trial %{x}"), (2, h.minutes, "ended at %{x:.1f} min")):
            fig.add_trace(go.Scatter(x=[x[i] for i in idx], y=[h.value[i] for i in idx], mode="markers",
                                     name=status, legendgroup=status, showlegend=col == 1,
                                     marker=dict(color=STATUS_COLORS.get(status, "#333"), size=8),
                                     text=[escape(h.trial_id[i]) for i in idx],
                                     hovertemplate=what + " (%{text})<br>val H at its best epoch %{y:.2f}"
                                                          "<extra></extra>"), 1, col)
    fig.add_trace(go.Scatter(x=h.trial_number, y=h.best_so_far, mode="lines", name="best so far (completed)",
                             line=dict(color="#ff7f0e", shape="hv")), 1, 1)
    fig.add_trace(go.Scatter(x=h.ended_minutes, y=h.best_so_far_by_time, mode="lines+markers",
                             name="best so far (time)", line=dict(color="#ff7f0e", shape="hv", dash="dot"),
                             marker=dict(size=4)), 1, 2)
    starts = [i for i, label in enumerate(h.start) if label]
    fig.add_trace(go.Scatter(x=[h.trial_number[i] for i in starts], y=[h.value[i] for i in starts], mode="markers+text",
                             name="starting points", marker=dict(symbol="star-open", size=16, color="#2ca02c"),
                             text=[escape(h.start[i]) for i in starts], textposition="top center",
                             hoverinfo="skip"), 1, 1)
    if h.defaults_H is not None:
        line = dict(color="#2ca02c", dash="dash", width=1)
        fig.add_hline(y=h.defaults_H, line=line, row=1, col=1, annotation_text=f"defaults: H {h.defaults_H:.2f}",
                      annotation_position="bottom right")
        fig.add_hline(y=h.defaults_H, line=line, row=1, col=2)
    fig.update_xaxes(title_text="trial number", row=1, col=1)
    fig.update_xaxes(title_text="minutes since the first trial started", row=1, col=2)
    fig.update_yaxes(title_text="validation H at the best epoch (%)", row=1, col=1)
    return _layout(fig, "Optimization history (the best so far counts completed trials: a study chooses among them; "
                        "dashed green: method.md's defaults)")


def learning_curves(curves: list[rec.Curve], rungs: list[rec.Rung]) -> go.Figure:
    fig = go.Figure()
    shown = set()
    for c in curves:
        pruned = c.status != "completed"
        fig.add_trace(go.Scatter(
            x=c.epochs, y=c.val_H, mode="lines+markers", name=c.status, legendgroup=c.status,
            marker=dict(size=4),  # the epochs H was scored at (the rungs and the last): lines only join them
            showlegend=c.status not in shown, opacity=0.45 if pruned else 0.95,
            line=dict(color=STATUS_COLORS.get(c.status, "#333"), width=1 if pruned else 2,
                      dash="dot" if pruned else "solid"),
            hovertemplate=f"trial {escape(c.trial_id)} ({escape(c.status)})<br>epoch %{{x}}: H %{{y:.2f}}<extra></extra>"))
        shown.add(c.status)
    for r in rungs:  # a rung that never earned trust stopped nobody: drawn faint
        fig.add_vline(x=r.epoch, line=dict(color="#ff7f0e" if r.trusted else "#bbbbbb", dash="dash", width=1),
                      annotation_text=f"rung {r.epoch}" + ("" if r.trusted else " (untrusted)"),
                      annotation_position="top")
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="validation H (%)")
    return _layout(fig, "Learning curves: H where it was scored (pruned trials dotted; ASHA rungs dashed, grey where the "
                        "study's order never trusted them)", height=460)


def importance(imp: rec.Importance) -> go.Figure:
    fig = go.Figure(go.Bar(x=imp.importance[::-1], y=[escape(p) for p in imp.params[::-1]], orientation="h",
                           marker_color="#1f77b4", hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_xaxes(title_text=f"fANOVA importance for {escape(imp.basis)}")
    return _layout(fig, "Hyperparameter importance", height=320)


def parallel_coordinates(r: rec.StudyResults, params: list[str]) -> go.Figure:
    t = r.trials[r.trials.status.isin(["completed", "pruned"])]
    value = t.best_val_H.fillna(0.0)
    dims = []
    for p in params:
        if not hyperparams.get(p).categorical:  # searched log-uniform: log axes
            import numpy as np
            vals = np.log10(t[p].astype(float))
            dims.append(dict(label=f"log10 {escape(p)}", values=vals))
        elif not pd.api.types.is_numeric_dtype(t[p]):  # a categorical of strings (sampling): codes, labelled
            names = sorted(t[p].dropna().unique())
            dims.append(dict(label=escape(p), values=t[p].map({n: i for i, n in enumerate(names)}),
                             tickvals=list(range(len(names))), ticktext=[escape(n) for n in names]))
        else:
            dims.append(dict(label=escape(p), values=t[p]))
    dims.append(dict(label="val H", values=value))
    fig = go.Figure(go.Parcoords(line=dict(color=value, colorscale="Viridis", showscale=True,
                                           colorbar=dict(title="val H")), dimensions=dims))
    fig = _layout(fig, "Parallel coordinates (completed and pruned trials; H at their best epoch)", height=460)
    fig.update_layout(margin=dict(t=110))  # room for the axis labels under the title
    return fig


def slices(r: rec.StudyResults, params: list[str]) -> go.Figure:
    fig = make_subplots(rows=1, cols=len(params), shared_yaxes=True, subplot_titles=[escape(p) for p in params])
    t = r.trials
    shown = set()
    for i, p in enumerate(params, 1):
        for status, group in t.groupby("status"):
            fig.add_trace(go.Scatter(
                x=group[p], y=group.best_val_H.fillna(0.0), mode="markers", name=status, legendgroup=status,
                showlegend=status not in shown, marker=dict(color=STATUS_COLORS.get(status, "#333"), size=7),
                text=[escape(x) for x in group.trial_id],
                hovertemplate=f"{escape(p)} %{{x{'' if hyperparams.get(p).categorical else ':.4g'}}}<br>best val H %{{y:.2f}}"
                              "<br>%{text}<extra></extra>"), 1, i)
            shown.add(status)
        if not hyperparams.get(p).categorical:
            fig.update_xaxes(type="log", row=1, col=i)
        else:
            fig.update_xaxes(type="category", row=1, col=i)
    fig.update_yaxes(title_text="best validation H (%)", row=1, col=1)
    return _layout(fig, "Effect of each hyperparameter (log axes for ranges)", height=400)


def timeline(bars: list[rec.TimelineBar]) -> go.Figure:
    fig = go.Figure()
    shown = set()
    for b in bars:
        ms = (b.end - b.start).total_seconds() * 1000
        fig.add_trace(go.Bar(base=[b.start], x=[ms], y=[escape(b.lane)], orientation="h", name=b.status,
                             legendgroup=b.status, showlegend=b.status not in shown,
                             marker_color=STATUS_COLORS.get(b.status, "#333"), opacity=0.8,
                             hovertemplate=f"trial {escape(b.trial_id)} ({escape(b.status)}), "
                                           f"{ms / 1000:.1f} s<extra></extra>"))
        shown.add(b.status)
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(type="date", title_text="time (UTC)")
    # Lanes in reading order from the top: node, device, executor, slot (numbers compared as numbers).
    natural = lambda w: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", w)]  # noqa: E731
    lanes = sorted({escape(b.lane) for b in bars}, key=natural)
    fig.update_yaxes(categoryorder="array", categoryarray=lanes[::-1])
    return _layout(fig, "Trial timeline by node, device and slot", height=max(260, 90 + 40 * len(lanes)))
