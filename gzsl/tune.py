"""Run a hyperparameter study: Ray Tune + Optuna TPE + ASHA, results in Parquet.

    python -m gzsl.tune --study demo
    python -m gzsl.tune --study cub_full --data-root ~/xlsa17 --address auto
    ray job submit --address http://localhost:8265 --working-dir . -- \
        python -m gzsl.tune --study cub_full --data-root '~/xlsa17' --address auto   # ~ on the head

The search scores validation H only (no test image is read); afterwards the best
configuration is retrained on all of trainval with several seeds and scored once
on the test split (final.parquet). Ctrl-C stops cleanly; --resume continues.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from gzsl.errors import GzslError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gzsl.tune", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--study", required=True, help="a shipped study (demo, synth_cub, cub_full, awa1_full, awa2_full, sun_full: studies/) or a .toml path")
    p.add_argument("--data-root", help="xlsa17 folder for real datasets (overrides the study's data_root)")
    p.add_argument("--results", help="results folder or pyarrow URI such as s3://bucket/results/NAME "
                                     "(default: results/<study>; on a cluster, --address or $RAY_ADDRESS, "
                                     "~/gzsl-results/<study> on the node the driver runs on: the head for "
                                     "`ray job submit`)")
    p.add_argument("--address", help="Ray cluster to join ('auto' on a cluster node; default: $RAY_ADDRESS, else a "
                                     "local Ray; the first lines say when $RAY_ADDRESS chose it)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all cores)")
    p.add_argument("--gpu", type=float, metavar="SHARE",
                   help="GPUs per trial (per executor of a packed study), instead of the study file's "
                        "resources.gpu: 0 trains on CPU, 0.25 puts four trials on a GPU")
    p.add_argument("--num-samples", type=int, help="number of trials (overrides the study's budget)")
    p.add_argument("--max-concurrent", type=int, help="trials running at once (default: as many as resources allow)")
    p.add_argument("--optuna-storage",
                   help="Optuna RDB URL without a password (default: $GZSL_OPTUNA_STORAGE, else "
                        "sqlite:///<results>/optuna.db); a URL with a password goes in $GZSL_OPTUNA_STORAGE, never "
                        "on the command line, and is never written to the results, logs or Tune's saved state")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of this study")
    p.add_argument("--no-confirm", action="store_true",
                   help="choose the search's best trial as it is, without retraining the finalists on fresh "
                        "validation splits ([confirm] in the study file)")
    p.add_argument("--no-refit", action="store_true", help="skip the final refit on trainval and test scoring")
    p.add_argument("--no-report", action="store_true", help="do not write the HTML report at the end")
    p.add_argument("--no-dashboard", action="store_true",
                   help="start the local Ray without its dashboard (a few seconds sooner; no effect with --address)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    start = time.time()
    from gzsl.gate import mask

    try:
        return _run(args, start)
    except GzslError as exc:
        print("error: " + " ".join(mask(str(exc)).splitlines()), file=sys.stderr)  # one line, whatever a value held
        return 2


def _progress_to_stdout() -> None:
    """The study's progress lines (the `gzsl` logger of every module) on standard output, one line
    each with nothing added, flushed as they come."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("gzsl")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _run(args, start: float) -> int:
    from gzsl import gate
    from gzsl.datasets import load

    _progress_to_stdout()
    checked = gate.check(args)  # everything that needs no Ray, before Ray starts (gzsl.gate)
    spec, results, address = checked.spec, checked.results, checked.address
    for note in checked.notes:
        print(note, flush=True)
    from gzsl import hyperparams
    from gzsl.selection import TRUST_TRIALS, rung_epochs

    if spec.eval_every > 1 and spec.grace_period % spec.eval_every:
        print(f"warning: {spec.path}: asha.grace_period {spec.grace_period} is not a multiple of "
              f"training.eval_every {spec.eval_every}: the lowest rung judges on the next evaluated epoch")
    from gzsl import study

    if not address:
        study.check_local_gpu(spec, "--gpu" if args.gpu is not None else None)  # before loading data and starting Ray: such a study could never run here
    data = load(spec.dataset, spec.split, spec.data_root, seed=spec.seed)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own banner and tables: our lines say it
    # Save Tune's experiment state often: after a crash, trials finished since the last save are
    # rerun (Parquet and Optuna keep their first outcome), so a short period wastes little.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")

    import ray
    from ray.job_config import JobConfig

    experiment = study.check_start(spec, results, args.resume)  # before starting Ray: a wrong start fails at once
    local = {} if address else {"num_cpus": args.num_cpus, **({"include_dashboard": False} if args.no_dashboard else {})}
    # The job's name and metadata on the dashboard's Jobs page (its UI shows metadata["job_name"]).
    job = JobConfig(metadata={"job_name": f"gzsl.tune {spec.name}", "study": spec.name,
                                             "dataset": spec.dataset, "results": results})
    # Without --address a Ray of its own, even where `ray start` left a cluster on this machine (which
    # ray.init(address=None) would join, and with num_cpus refuse).
    info = ray.init(address=address or "local", log_to_driver=False, configure_logging=False, job_config=job, **local)
    dashboard = getattr(info, "dashboard_url", "") or ""
    print(f"study {spec.name}: {data.name} split={data.split} ({len(data.train)} training images, "
          f"{len(data.seen_classes)}+{len(data.unseen_classes)} classes); "
          f"{args.num_samples or spec.num_samples} trials, ASHA rf {spec.reduction_factor} at candidate rungs "
          f"{rung_epochs(spec.epochs, spec.eval_every, spec.reduction_factor, spec.grace_period)} (each judges once its "
          f"order agrees with the end; the highest after {TRUST_TRIALS} trials "
          f"reach it; none below H {spec.h_floor:g}, nor within {spec.h_noise:g} H of its cutoff), "
          f"up to {spec.epochs} epochs, " + (f"resources/executor {spec.resources}, {spec.pack} members per executor"
                                              if spec.pack > 1 else f"resources/trial {spec.resources}"))
    print(f"results: {results}", flush=True)
    for label, point in spec.start:
        shown = study.pipeline.params_line(point)
        moved = [k for k, v in point.items() if label == "defaults" and v != hyperparams.get(k).default]
        print(f"first trials: {label}: {shown}" + (f" (method.md's; {', '.join(moved)} moved inside the space)"
                                                   if moved else ""))
    if dashboard:
        print(f"Ray dashboard: http://{dashboard}{dashboard_sign_in()}", flush=True)
    steps = study.Steps(num_samples=args.num_samples, max_concurrent=args.max_concurrent, optuna_url=checked.storage,
                        resume=args.resume, cluster=bool(address), experiment=experiment, confirm=not args.no_confirm,
                        refit=not args.no_refit, report=None if args.no_report else _reports_folder(address))
    result = study.run(spec, load, results, steps, data=data)
    again = f"python -m gzsl.tune --study {args.study} --resume --results {results}"
    if result.interrupted:
        print(f"study stopped with {result.searched}/{result.budget} trials recorded; continue with {again}")
        return 130
    if result.chosen is None:
        print("no trial finished with a score: nothing to refit")
        return 1
    if result.seeds and result.final.empty:
        print(f"final refit: no seed completed (error files in {results.rstrip('/')}/errors/); {again} retries each once")
        return 1
    if result.seeds_failed:
        print(f"final refit: {result.seeds_failed} of {result.seeds} seeds failed (error files in "
              f"{results.rstrip('/')}/errors/); {again} retries each once")
        return 1
    print(f"done in {time.time() - start:.0f}s; results in {results}")
    return 0


def _reports_folder(address: str | None) -> str:
    """reports/ beside the command; on a cluster beside the results' default root, on the head (a
    `ray job submit` entrypoint's working directory is a temporary copy)."""
    from gzsl.gate import default_results_root

    return os.path.join(default_results_root(address), "reports") if address else "reports"


def dashboard_sign_in() -> str:
    """How to get past the dashboard's "Authentication Token Required" (Ray's token auth)."""
    from gzsl.study.internals import token_auth_enabled

    if not token_auth_enabled():
        return ""
    return "  (it asks for a token: `ray get-auth-token` prints it, or read ~/.ray/auth_token)"


if __name__ == "__main__":
    sys.exit(main())
