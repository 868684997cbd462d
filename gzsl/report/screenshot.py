"""Render a report in headless Chromium: did the plots draw, did any script fail, did the
page reach for the network; and a screenshot of what a person sees.

    python -m gzsl.report.screenshot reports/demo.html docs/demo-report.png

Needs Debian's chromium (or any Chromium: --chromium PATH) and the `playwright` package.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


class Rendered(NamedTuple):
    errors: list[str]  # page errors and console errors
    external_requests: list[str]  # anything not file://
    plots: int  # Plotly figures on the page
    drawn: int  # their SVG / canvas surfaces
    table_rows: int  # rows of the all-trials table


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def render(html: str | Path, png: str | Path | None = None, min_plots: int = 1, chromium: str | None = None,
           width: int = 1366, height: int = 900, full_page: bool = True, before_shot=None) -> Rendered:
    from playwright.sync_api import sync_playwright

    errors, requests = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium or find_chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: requests.append(r.url))
        page.goto(Path(html).resolve().as_uri())
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {min_plots}",
                               timeout=60000)
        result = Rendered(errors, [u for u in requests if not u.startswith("file://")],
                          page.locator(".js-plotly-plot").count(),
                          page.evaluate("document.querySelectorAll('.js-plotly-plot .main-svg, "
                                        ".js-plotly-plot canvas').length"),
                          page.locator("#trials tbody tr").count())
        if before_shot is not None:
            before_shot(page)
        if png is not None:
            page.screenshot(path=str(png), full_page=full_page)
        browser.close()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gzsl.report.screenshot", description=__doc__.split("\n\n")[0])
    p.add_argument("html")
    p.add_argument("png")
    p.add_argument("--chromium", help="browser executable (default: chromium on PATH)")
    p.add_argument("--height", type=int, default=900, help="viewport height; the shot is the first screen "
                                                            "unless --full-page")
    p.add_argument("--full-page", action="store_true")
    args = p.parse_args(argv)
    if not Path(args.html).is_file():
        print(f"error: {args.html}: no such page; write one first (python -m gzsl.report --study NAME)",
              file=sys.stderr)
        return 2
    if not (args.chromium or find_chromium()):
        print("error: no chromium on PATH; install Debian's chromium or pass --chromium", file=sys.stderr)
        return 2
    r = render(args.html, args.png, chromium=args.chromium, height=args.height, full_page=args.full_page)
    print(f"{args.png}: {r.plots} plots, {r.drawn} drawn surfaces, {len(r.errors)} errors, "
          f"{len(r.external_requests)} external requests")
    return 0 if not r.errors and not r.external_requests else 1


if __name__ == "__main__":
    sys.exit(main())
