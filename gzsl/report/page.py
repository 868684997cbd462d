"""HTML assembly: one self-contained page (plotly.js embedded once, no network fetches),
written atomically so a browser refresh never sees half a file."""

from __future__ import annotations

import os
import tempfile
from html import escape
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:16px 24px 48px}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:8px 24px;z-index:10;font-size:14px}
nav a{margin-right:14px;color:#1f5fa8;text-decoration:none}
h1{font-size:26px;margin:12px 0 4px}h2{font-size:20px;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:22px}.card span{font-size:13px;color:#666}
table{border-collapse:collapse;background:#fff;font-size:13px}table.sortable{width:100%}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}th{background:#f0f0f0;cursor:pointer;position:sticky;top:37px}
td.l,th.l{text-align:left}.note{color:#666;font-size:14px}.ours{font-weight:bold;background:#eef6ff}
tr:target{background:#fff3c4}.status-pruned{color:#888}.status-error,.status-diverged{color:#b00}
.fig{background:#fff;border:1px solid #ddd;border-radius:6px;margin:8px 0}
.warning{background:#fff3e0;border:1px solid #e0a040;border-radius:6px;padding:8px 12px;font-size:14px}
"""

SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var table = th.closest('table'), body = table.tBodies[0];
    var rows = Array.from(body.rows), asc = th.dataset.asc !== '1';
    rows.sort(function(a, b){
      var x = a.cells[col].dataset.v || a.cells[col].textContent, y = b.cells[col].dataset.v || b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
    table.querySelectorAll('th').forEach(function(h){ h.dataset.asc = ''; });
    th.dataset.asc = asc ? '1' : '0';
  });
});
"""


def figure_html(fig: go.Figure, div_id: str) -> str:
    return '<div class="fig">' + fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                                                config={"displaylogo": False, "responsive": True,
                                                        "topojsonURL": None}) + "</div>"


def table_html(columns: list[str], rows: list[list], left: set[str] = frozenset(), row_ids: list[str] | None = None,
               row_classes: list[str] | None = None, sortable: bool = True) -> str:
    head = "".join(f'<th class="{"l" if c in left else ""}">{escape(c)}</th>' for c in columns)
    body = []
    for i, row in enumerate(rows):
        rid = f' id="{escape(row_ids[i])}"' if row_ids else ""
        cls = f' class="{escape(row_classes[i])}"' if row_classes else ""
        cells = []
        for c, v in zip(columns, row):
            text, sort = _cell(v)
            cells.append(f'<td class="{"l" if c in left else ""}" data-v="{escape(sort)}">{text}</td>')
        body.append(f"<tr{rid}{cls}>{''.join(cells)}</tr>")
    cls = "sortable" if sortable else ""
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _cell(v) -> tuple[str, str]:
    """(escaped display text, sort key). Values already marked safe pass as ('html', text)."""
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "html":
        return v[1], ""
    if v is None or (isinstance(v, float) and v != v):
        return "", ""
    if isinstance(v, float):
        return (f"{v:.4g}" if abs(v) < 0.01 or abs(v) >= 1e4 else f"{v:.2f}"), repr(v)
    return escape(str(v)), str(v)


def page(title: str, sections: list[tuple[str, str, str]], subtitle: str = "") -> str:
    """sections: (anchor, heading, inner html)."""
    nav = "".join(f'<a href="#{a}">{escape(h)}</a>' for a, h, _ in sections)
    body = "".join(f'<section id="{a}"><h2>{escape(h)}</h2>{inner}</section>' for a, h, inner in sections)
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{CSS}</style>"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>"
            f"<nav>{nav}</nav><main><h1>{escape(title)}</h1><p class=\"note\">{escape(subtitle)}</p>{body}</main>"
            f"<script>{SORT_JS}</script></body></html>")


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path
