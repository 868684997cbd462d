"""A study on two Ray nodes of this machine, the worker with a disk of its own: its raylet and
workers run in a mount namespace (`unshare -m`) with a tmpfs over the home folder and the results
folder, so what it writes there the head never sees, as on a cluster without a shared filesystem.
The head takes no trials (no CPUs): trials, the refit and packed executors run on the worker.
Then the worker is killed mid-study (its raylet, by pid) and another joins."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from tests.conftest import free_ports
from tests.test_cluster import RAY, ROOT, OwnHead, _env
from tests.test_study import INJECT, optuna_states, write_study

GCS = f"127.0.0.1:{free_ports(1)[0]}"  # the head's port, from the OS: no clash with another Ray here


def _mount_namespace() -> str | None:
    """Why a mount namespace with a tmpfs cannot be made here (None: it can): root and unshare are
    not enough in a container without CAP_SYS_ADMIN, so it is probed, not assumed."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "root and unshare (util-linux)"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", "mount -t tmpfs none /mnt"],
                           capture_output=True, text=True, timeout=30)
    return None if probe.returncode == 0 else f"a mount namespace ({probe.stderr.strip()[:80]})"


_WHY = _mount_namespace()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=f"a worker node with a disk of its own needs {_WHY}")

HOME = Path.home()

# In the worker's namespace: what it needs of the home folder (the interpreter, this checkout)
# is bound aside, a tmpfs hides the rest, and the kept folders are moved back over it.
NAMESPACE = r"""
set -e
keep=$(mktemp -d /tmp/gzsl-keep.XXXXXX)
i=0
for d in $KEEP; do i=$((i+1)); mkdir -p "$keep/$i"; mount --bind "$d" "$keep/$i"; done
mount -t tmpfs gzsl-worker-home "$HOME"
i=0
for d in $KEEP; do i=$((i+1)); mkdir -p "$d"; mount --move "$keep/$i" "$d"; done
for d in $HIDE; do mkdir -p "$d"; mount -t tmpfs gzsl-worker-disk "$d"; done
readlink /proc/self/ns/mnt
exec "$RAY" start --address "$ADDRESS" --num-cpus 2 --disable-usage-stats
"""


def _under_home(path: Path) -> bool:
    return path.resolve().is_relative_to(HOME.resolve()) and path.resolve() != HOME.resolve()


class WorkerNode:
    """`ray start --address` in a mount namespace of its own; stopped (or killed) alone: every
    process in that namespace."""

    def __init__(self, address: str, hide: list[Path], env: dict | None = None):
        """`env`: more environment for the node's processes (its workers inherit it)."""
        keep = sorted({str(p.resolve()) for p in (Path(sys.base_prefix), Path(sys.prefix), ROOT) if _under_home(p)})
        token = HOME / ".ray" / "auth_token"  # hidden by the tmpfs: the token goes in the environment
        env = {**_env(), **(env or {}), "KEEP": " ".join(keep), "HIDE": " ".join(map(str, hide)), "RAY": RAY, "ADDRESS": address,
               **({"RAY_AUTH_TOKEN": token.read_text().strip()} if token.exists() else {})}
        p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", NAMESPACE], capture_output=True,
                           text=True, timeout=180, env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        self.namespace = p.stdout.splitlines()[0].strip()  # mnt:[inode]

    def pids(self) -> list[int]:
        pids = []
        for ns in Path("/proc").glob("[0-9]*/ns/mnt"):
            try:
                if os.readlink(ns) == self.namespace:
                    pids.append(int(ns.parent.parent.name))
            except OSError:
                pass
        return pids

    def raylet(self) -> int:
        (pid,) = [p for p in self.pids() if _comm(p) == "raylet"]
        return pid

    def stop(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


NODES = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)
print(json.dumps([{"id": n["NodeID"], "alive": n["Alive"], "cpus": n["Resources"].get("CPU", 0)} for n in ray.nodes()]))
"""


def nodes(address: str) -> list[dict]:
    p = subprocess.run([sys.executable, "-c", NODES, address], capture_output=True, text=True, timeout=120,
                       env=_env())
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


# The head declares a node dead after 3 failed health checks 1 s apart (Ray's default: 5, 3 s apart).
FAST_HEALTH_CHECK = json.dumps({"health_check_period_ms": 1000, "health_check_timeout_ms": 1000,
                                "health_check_failure_threshold": 3})


@pytest.fixture
def cluster(tmp_path):
    """A head of no CPUs and one worker node that cannot see the head's home or the results folder;
    every process of the worker nodes holds its epochs while the file `hold` exists (tests/inject)."""
    results, hold = tmp_path / "results", tmp_path / "hold"
    results.mkdir()
    head = OwnHead("--num-cpus", "0", "--port", GCS.rsplit(":", 1)[1], "--include-dashboard=false",
                   f"--system-config={FAST_HEALTH_CHECK}")
    inject = {"PYTHONPATH": os.pathsep.join([INJECT, os.environ.get("PYTHONPATH", "")]),
              "GZSL_INJECT_FAULT": "hold-while", "GZSL_INJECT_HOLD": str(hold)}
    workers = []

    def add_worker() -> WorkerNode:
        workers.append(WorkerNode(GCS, hide=[results], env=inject))
        return workers[-1]

    try:
        add_worker()
        yield SimpleNamespace(head=head, workers=workers, add_worker=add_worker, results=results, hold=hold)
    finally:
        for w in workers:
            w.stop()
        head.stop()


def test_a_study_on_a_worker_without_shared_disk_writes_its_models_on_the_head(cluster, tmp_path):
    results = cluster.results
    (worker,) = [n for n in nodes(GCS) if n["cpus"] > 0]  # the hold file is absent: no hold
    study = write_study(tmp_path, name="nodes", epochs=2, samples=3, final_seeds=1, grace=2)
    p = subprocess.run([sys.executable, "-m", "gzsl.tune", "--study", str(study), "--results", str(results),
                        "--address", GCS, "--no-report"], capture_output=True, text=True, timeout=900,
                       env=_env())
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    trials = pd.read_parquet(results / "trials.parquet")
    assert len(trials) == 3 and trials.trial_id.is_unique
    assert set(trials.node_id) == {worker["id"]}  # trained on the worker, recorded on the head
    final = pd.read_parquet(results / "final.parquet")
    (model,) = final.model
    assert (results / model).is_file(), f"{model} is not on the head: {sorted(results.glob('models/*'))}"
    scored = subprocess.run([sys.executable, "-m", "gzsl.predict", "--model", str(results / model)],
                            capture_output=True, text=True, timeout=300)
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json.loads(scored.stdout)["H"] == pytest.approx(final.test_H[0], abs=0.006)  # printed to 2 decimals


def held(hold: Path) -> list[Path]:
    return list(hold.parent.glob(hold.name + ".held-*"))


@pytest.mark.parametrize("pack", [1, 2])
def test_a_study_goes_on_when_its_worker_node_is_lost(cluster, tmp_path, pack):
    """Every trial holds at its first epoch on worker A; A's raylet is killed; worker B joins and
    the hold ends. The study completes: the trials that ran on A are retried (max_failures) and
    recorded once, from their attempt on B; no Optuna trial stays RUNNING; packed executors start
    again on B under their names; the driver says which node was lost."""
    results, hold = cluster.results, cluster.hold
    hold.touch()
    (a,) = [n["id"] for n in nodes(GCS) if n["cpus"] > 0]
    study = write_study(tmp_path, name=f"lost{pack}", epochs=2, samples=12, final_seeds=0, grace=2, max_failures=2)
    if pack > 1:  # two executors of one CPU, two configurations each
        study.write_text(study.read_text().replace("cpu = 1\n", "cpu = 1\npack = 2\n")
                         .replace("max_concurrent = 2", "max_concurrent = 4"))
    proc = subprocess.Popen([sys.executable, "-m", "gzsl.tune", "--study", str(study), "--results", str(results),
                             "--address", GCS, "--no-report"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=_env())
    try:
        deadline = time.monotonic() + 300
        while len(held(hold)) < 2:  # two trials (or two executors) wait in their first epoch on A
            assert time.monotonic() < deadline and proc.poll() is None, "no two processes held on worker A"
            time.sleep(0.5)
        os.kill(cluster.workers[0].raylet(), signal.SIGKILL)
        cluster.add_worker()
        hold.unlink()
        out = proc.communicate(timeout=600)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-4000:]
    (b,) = [n["id"] for n in nodes(GCS) if n["cpus"] > 0 and n["alive"]]
    assert f"node {a} (" in out and "lost" in out.split(f"node {a} (", 1)[1].split("\n", 1)[0], out[-4000:]
    retried = set(re.findall(r"^trial (\w+) retried", out, re.M))
    assert retried, out[-4000:]  # what ran on A failed with its node, and Tune tried it again
    trials = pd.read_parquet(results / "trials.parquet")
    assert len(trials) == 12 and trials.trial_id.is_unique  # each once, from its last attempt
    assert (trials.status != "error").all(), trials[["trial_id", "status", "error"]]
    assert retried <= set(trials.trial_id) and set(trials.node_id) == {b}  # all trained on B in the end
    states, _ = optuna_states(results, f"lost{pack}")
    assert "RUNNING" not in states and len(states) == 12, states
    if pack > 1:  # the executors that were on A started again on B, under their names
        assert "is gone" not in out and trials.executor_id.str.match(r"gzsl-lost2-\w+-executor-[01]$").all(), trials.executor_id
