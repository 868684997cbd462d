"""python -m gzsl.report: write a study's HTML report (or a comparison of several)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from gzsl.errors import GzslError, NoResultsYet


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gzsl.report", description=(
        "Turn a study's Parquet results into one self-contained HTML page (opens offline)."))
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--study", help="study name: reads results/<study>/, writes reports/<study>.html")
    what.add_argument("--results", help="a results folder or URI (e.g. s3://bucket/results/cub_full)")
    what.add_argument("--compare", nargs="+", metavar="STUDY", help="several studies (names or results folders)")
    p.add_argument("--out", help="output HTML file (default: reports/<name>.html)")
    p.add_argument("--watch", type=float, metavar="SECONDS",
                   help="rewrite the page every SECONDS while a study runs (Ctrl-C to stop)")
    return p


def _results_of(name: str) -> str:
    return name if ("/" in name or "://" in name) else os.path.join("results", name)


def main(argv: list[str] | None = None) -> int:
    from gzsl.report import write_comparison, write_report

    args = parser().parse_args(argv)
    if args.compare:
        out = args.out or os.path.join("reports", "compare-" + "-".join(os.path.basename(c.rstrip("/"))
                                                                          for c in args.compare) + ".html")
        write = lambda: write_comparison([_results_of(c) for c in args.compare], out)  # noqa: E731
    else:
        results = args.results or _results_of(args.study)
        name = args.study or results.rstrip("/").rsplit("/", 1)[-1]
        out = args.out or os.path.join("reports", f"{name}.html")
        write = lambda: write_report(results, out, study=args.study)  # noqa: E731
    if args.watch is not None and args.watch <= 0:
        print(f"error: --watch must be a positive number of seconds, got {args.watch}", file=sys.stderr)
        return 2
    try:
        waiting = False
        while True:
            try:
                print(f"report: {write()}", flush=True)
            except NoResultsYet as exc:
                if not args.watch:
                    raise
                if not waiting:  # started before the study's first trial ended: wait for it
                    print(f"waiting: {exc.args[0].split(';')[0]} yet; checking every {args.watch:g}s "
                          "(Ctrl-C to stop)", flush=True)
                waiting = True
            if not args.watch:
                return 0
            time.sleep(args.watch)
    except GzslError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
