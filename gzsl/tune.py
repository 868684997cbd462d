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
                                     "(default: results/<study>; in a `ray job submit` job, ~/gzsl-results/<study> "
                                     "on the head node)")
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


def _run(args, start: float) -> int:
    from gzsl import gate
    from gzsl.datasets import load

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
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())
        moved = [k for k, v in point.items() if label == "defaults" and v != hyperparams.get(k).default]
        print(f"first trials: {label}: {shown}" + (f" (method.md's; {', '.join(moved)} moved inside the space)"
                                                   if moved else ""))
    if dashboard:
        print(f"Ray dashboard: http://{dashboard}{dashboard_sign_in()}", flush=True)
    store = study.run_study(spec, data, results, num_samples=args.num_samples, max_concurrent=args.max_concurrent,
                            optuna_url=checked.storage, resume=args.resume, cluster=bool(address),
                            experiment=experiment)
    trials = store.read("trials")
    target = int(store.read("study").sort_values("started_at").num_samples.iloc[-1])  # this run's budget
    if len(trials) < target:
        print(f"study stopped with {len(trials)}/{target} trials recorded; continue with "
              f"python -m gzsl.tune --study {args.study} --resume --results {results}")
        return 130
    counts = trials.status.value_counts().to_dict()
    print("trials: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    _audit(spec, store, data)
    if spec.confirm_top > 0 and spec.confirm_splits > 0 and not args.no_confirm:
        _confirm(spec, store, load)
    best = study.best_params(store, spec.h_noise)
    if best is None:
        print("no trial finished with a score: nothing to refit")
        return 1
    shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.items())
    print(f"best configuration: {shown}")
    incomplete = 0
    if not args.no_refit and spec.final_seeds > 0:
        test_data = load(spec.dataset, "test", spec.data_root, seed=spec.seed)  # first use of test images
        final = study.final_refit(spec, best, test_data, store)
        incomplete = spec.final_seeds - len(final)
        if len(final) == 0:
            print(f"final refit: no seed completed (error files in {results.rstrip('/')}/errors/); "
                  f"python -m gzsl.tune --study {args.study} --resume --results {results} retries each once")
            return 1
        for prefix, label in (("test_", "CADA-VAE classifier recipe"), ("fast_test_", "fast classifier")):
            if len(final) == 1:
                print(f"test (1 seed), {label}: " + "  ".join(f"{k} {final[prefix + k].iloc[0]:.2f}" for k in "USH"))
            else:
                print(f"test (mean ± std over {len(final)} seeds), {label}: " + "  ".join(
                    f"{k} {final[prefix + k].mean():.2f} ± {final[prefix + k].std():.2f}" for k in "USH"))
        saved = final.dropna(subset=["model"]).sort_values("seed")
        if len(saved):
            first = f"{results.rstrip('/')}/{saved.model.iloc[0]}"
            print(f"models: {len(saved)} in {results.rstrip('/')}/models/ (python -m gzsl.predict --model {first})")
    if not args.no_report:
        _report(spec.name, results)
    if incomplete:
        print(f"final refit: {incomplete} of {spec.final_seeds} seeds failed (error files in {results.rstrip('/')}/errors/); "
              f"python -m gzsl.tune --study {args.study} --resume --results {results} retries each once")
        return 1
    print(f"done in {time.time() - start:.0f}s; results in {results}")
    return 0


def _audit(spec, store, data) -> None:
    """The stops the policy audits, retrained to the end (gzsl.study.audit), and the verdict:
    a warning, with what to change, when a stop cost the study a better trial."""
    from gzsl import study
    from gzsl.results import best_trial
    from gzsl.selection import alignment_rung, wrongful

    trials = store.read("trials")
    rows = study.audit(spec, trials, data, store)
    best = best_trial(trials)
    if rows.empty or best is None:
        return
    found = wrongful(dict(zip(rows.trial_id, rows.best_val_H)), best["best_val_H"], spec.h_noise)
    print(f"stops audited: {len(rows)}; would have beaten the search's best (val H {best['best_val_H']:.2f}) by more "
          f"than h_noise = {spec.h_noise:g}: {len(found)}")
    if found:
        print(f"warning: the rungs stopped {len(found)} trial(s) that would have won ({', '.join(found)}; "
              "audit.parquet): this data ranks late; raise asha.h_noise, or set asha.grace_period = "
              f"{alignment_rung(spec.epochs, spec.eval_every)} (one rung, after the warm-ups), and --resume or rerun")


def _confirm(spec, store, load) -> None:
    """The finalists retrained on fresh validation splits (gzsl.study.confirm), and the table of
    what that showed."""
    from gzsl import study
    from gzsl.results import confirmed, finalists

    trials = store.read("trials")
    chosen = finalists(trials, spec.confirm_top)
    if not chosen:
        return
    splits = range(1, spec.confirm_splits + 1)
    print(f"confirming {len(chosen)} finalists (the best {spec.confirm_top} and the defaults) on "
          f"{spec.confirm_splits} fresh validation splits: {len(chosen) * spec.confirm_splits} trainings", flush=True)
    data = {k: load(spec.dataset, spec.split, spec.data_root, seed=spec.seed, val_split=k) for k in splits}
    rows = study.confirm(spec, chosen, data, store)
    pick, means = confirmed(trials, rows, spec.h_noise)
    for f in chosen:
        tid = f["trial_id"]
        label = f" ({f['start']})" if f.get("start") else ""
        mean = f"{means[tid]:.2f}" if tid in means else "incomplete"
        print(f"  trial {tid}{label}: search val H {f['best_val_H']:.2f}; fresh splits mean {mean}"
              + ("  <- chosen" if pick is not None and pick["trial_id"] == tid else ""))
    print(f"(a finalist replaces the defaults only when ahead of them by more than asha.h_noise = {spec.h_noise:g} H)")


def dashboard_sign_in() -> str:
    """How to get past the dashboard's "Authentication Token Required" (Ray's token auth)."""
    from gzsl.study.internals import token_auth_enabled

    if not token_auth_enabled():
        return ""
    return "  (it asks for a token: `ray get-auth-token` prints it, or read ~/.ray/auth_token)"


def _report(name: str, results: str) -> None:
    from gzsl import report
    from gzsl.gate import default_results_root, in_ray_job

    reports = os.path.join(default_results_root(), "reports") if in_ray_job() else "reports"
    try:
        path = report.write_report(results, os.path.join(reports, f"{name}.html"), study=name)
    except Exception as exc:  # the results are safe in Parquet: say so, don't fail the study
        print(f"report not written ({type(exc).__name__}: {exc}); results are in {results}, "
              f"retry with python -m gzsl.report --results {results}")
        return
    print(f"report: {path}")


if __name__ == "__main__":
    sys.exit(main())
