import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io

XLSA17 = Path(__file__).resolve().parents[2] / "shared" / "data" / "xlsa17"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own feature cache, so none sees another's."""
    monkeypatch.setenv("GZSL_CACHE", str(tmp_path / "gzsl-cache"))


@pytest.fixture(autouse=True)
def _fast_paths_unchecked(monkeypatch):
    """Every test starts as a new process would: no fast path checked yet (gzsl.fastpaths)."""
    from gzsl import fastpaths
    monkeypatch.setattr(fastpaths, "_verdicts", {})


def real_att_splits(name: str) -> Path:
    path = XLSA17 / name / "att_splits.mat"
    if not path.is_file():
        pytest.skip(f"{path} absent: the real xlsa17 split files live in ../shared, outside the repo")
    return path


UNSEEN_COUNT = {"CUB": 50, "AWA1": 10, "AWA2": 10, "SUN": 72}


def write_matching_res101(att_path: Path, out_root: Path, name: str, dim: int = 3, seed: int = 0) -> Path:
    """A res101.mat consistent with a real att_splits.mat: feature row 0 holds each image's
    1-based number; labels put test_unseen images in unseen classes, val_loc images (when
    present) in validation classes, everything else in training classes. Labels are floats,
    as in the published files."""
    att = scipy.io.loadmat(str(att_path))
    n_classes = att["att"].shape[1]
    locs = {k: att[k].ravel().astype(np.int64) - 1 for k in att if k.endswith("_loc")}
    n_images = 1 + max(v.max() for v in locs.values())
    rng = np.random.default_rng(seed)
    classes = rng.permutation(n_classes)
    unseen = classes[: UNSEEN_COUNT[name]]
    labels = np.full(n_images, -1)
    labels[locs["test_unseen_loc"]] = unseen[np.arange(len(locs["test_unseen_loc"])) % len(unseen)]
    rest = classes[len(unseen):]
    if "val_loc" in locs:
        n_val = len(np.unique(locs["val_loc"])) and {"AWA1": 13, "AWA2": 13, "SUN": 65}[name]
        val, train = rest[:n_val], rest[n_val:]
        labels[locs["val_loc"]] = val[np.arange(len(locs["val_loc"])) % len(val)]
        labels[locs["train_loc"]] = train[np.arange(len(locs["train_loc"])) % len(train)]
    else:
        seen_imgs = np.union1d(locs["trainval_loc"], locs["test_seen_loc"])
        labels[seen_imgs] = rest[np.arange(len(seen_imgs)) % len(rest)]
    assert (labels >= 0).all()
    features = rng.random((dim, n_images)) + 0.1
    features[0] = np.arange(1, n_images + 1)
    folder = out_root / name
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(folder / "res101.mat"), {"features": features, "labels": (labels + 1.0)[:, None]})
    os.symlink(att_path, folder / "att_splits.mat")
    return out_root


@pytest.fixture(scope="session")
def short_study(tmp_path_factory):
    """One real small study, shared by the end-to-end test and the report's tests: a local Ray of
    2 CPUs, Optuna, ASHA (candidate rungs at epochs 4 and 12 of 16), H scored every 2nd epoch, a fixed
    kl_weight and a searched sampling, the best 2 trials and the defaults confirmed on 1 fresh
    validation split, the refit with 2 seeds and the report written at the end.
    Returns (study file, results folder, the run's stdout); read-only."""
    from tests.test_study import write_study

    tmp = tmp_path_factory.mktemp("short-study")
    study = write_study(tmp, name="mini", epochs=16, samples=6, final_seeds=2, grace=2, eval_every=2,
                        confirm_top=2, confirm_splits=1, tiny=False,  # its tests read what a model learns
                        training_extra="kl_weight = 0.5", space_extra='sampling = { choices = ["textbook", "cada"] }')
    results = tmp / "results"
    p = subprocess.run([sys.executable, "-m", "gzsl.tune", "--study", str(study), "--results", str(results),
                        "--num-cpus", "2", "--no-dashboard"], capture_output=True, text=True, timeout=800, cwd=tmp)
    assert p.returncode == 0, p.stdout + p.stderr
    return study, results, p.stdout


def free_ports(n: int) -> list[int]:
    """n TCP ports the OS has free now (all bound at once, so they differ), for a Ray of a test's own."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    """The suite's last line says what was skipped and why, counted: a skip is never silent."""
    skipped = terminalreporter.stats.get("skipped", [])
    reasons = {}
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reasons[reason.removeprefix("Skipped: ")] = reasons.get(reason.removeprefix("Skipped: "), 0) + 1
    shown = "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda x: -x[1]))
    terminalreporter.write_line(f"skipped: {len(skipped)}" + (f" ({shown})" if shown else ""))


def pytest_sessionfinish(session, exitstatus):
    session.config.gzsl_exitstatus = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """After every report is written, end a process that ran Ray in-process without the
    interpreter's teardown: Ray's C++ metrics threads can outlive the objects they read there
    (a use-after-free in its OpenTelemetry exporter at shutdown, ray-project/ray#60048), and this
    suite's process once died of SIGSEGV in libstdc++ after all tests had passed (rc 139)."""
    status = getattr(config, "gzsl_exitstatus", None)
    # GZSL_TEST_HARD_EXIT=0: a caller that runs pytest in its own process and goes on (mutmut) keeps it.
    if status is not None and "ray" in sys.modules and os.environ.get("GZSL_TEST_HARD_EXIT") != "0":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def ray_sessions() -> set[str]:
    """The Ray session folders on this machine (/tmp/ray/session_<time>_<pid>), one per Ray started;
    <pid> is the process that started it (a driver's ray.init, or `ray start`)."""
    return {str(p) for p in Path("/tmp/ray").glob("session_2*")}


def ray_session_pids(session: str) -> list[int]:
    """The processes of one Ray session: each names its session folder on its command line."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):  # ended meanwhile
            if session.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
    return [pid for pid in pids if pid != os.getpid()]


def stop_ray_session(session: str) -> None:
    """End one Ray session's processes, never another Ray of this user (`ray stop` ends them all:
    a study running beside the suite would die with it)."""
    for sig, polls in ((signal.SIGTERM, 15), (signal.SIGKILL, 50)):  # 3 s to end cleanly, then killed
        for pid in ray_session_pids(session):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        for _ in range(polls):
            if not ray_session_pids(session):
                return
            time.sleep(0.2)
