"""What runs a study on a cluster, checked with what runs here: Ray's own validation of the
launcher config, the KubeRay manifests, a two-node Ray on this machine, and `ray job submit`
to a local head node."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from gzsl.studyfile import load_study
from tests.conftest import free_ports, ray_session_pids, ray_sessions, stop_ray_session
from tests.test_study import INJECT, write_study

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def test_launcher_config_passes_rays_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load((ROOT / "cluster" / "aws-gpu.yaml").read_text()))
    validate_config(config)  # Ray's JSON schema and its cross-field checks; raises when invalid
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"] == {"CPU": 0}  # no trials on the head
    assert types["gpu_worker"]["resources"]["GPU"] == 1
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start  # the dashboard is not opened to the world


def test_the_dockerfile_copies_only_what_exists():
    sources = [w for line in (ROOT / "cluster" / "Dockerfile").read_text().splitlines() if line.startswith("COPY")
               for w in line.split()[1:-1] if not w.startswith("--")]
    assert sources and all((ROOT / s).exists() for s in sources), sources


@pytest.mark.parametrize("manifest", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_manifests_fit_the_studies_trials(manifest):
    doc, _ = yaml.safe_load_all((ROOT / "cluster" / "kuberay" / manifest).read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == {"raycluster.yaml": "RayCluster",
                                                                "rayjob.yaml": "RayJob"}[manifest]
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    if doc["kind"] == "RayJob":
        assert "python -m gzsl.tune --study cub_full --address auto" in doc["spec"]["entrypoint"]
        # The storage URL (a database password) comes from a Secret, not the entrypoint.
        assert "--optuna-storage" not in doc["spec"]["entrypoint"]
        (env,) = spec["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
        assert env == {"name": "GZSL_OPTUNA_STORAGE", "valueFrom": {"secretKeyRef": {"name": "gzsl-optuna", "key": "url"}}}
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (gpu_group,) = spec["workerGroupSpecs"]
    container = gpu_group["template"]["spec"]["containers"][0]
    limits = container["resources"]["limits"]
    gpus, cpus = int(limits["nvidia.com/gpu"]), int(limits["cpu"])
    assert gpu_group["rayStartParams"] == {"num-cpus": str(cpus), "num-gpus": str(gpus)}
    for study in ("cub_full", "awa1_full", "awa2_full", "sun_full"):
        per_trial = load_study(study).resources
        trials_per_pod = gpus / per_trial["gpu"]
        assert trials_per_pod == int(trials_per_pod) >= 1
        assert cpus >= trials_per_pod * per_trial["cpu"]  # the GPU share, not the CPUs, limits a pod


OPERATOR = {"app.kubernetes.io/name": "kuberay-operator"}


@pytest.mark.parametrize("manifest", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_heads_take_only_their_clusters_pods_and_a_token(manifest):
    """The head holds GZSL_OPTUNA_STORAGE and takes jobs: token authentication on, and a
    NetworkPolicy over every pod of the cluster that admits its own pods and, on the dashboard port
    only, the KubeRay operator; no rule admits any pod or address else."""
    doc, policy = yaml.safe_load_all((ROOT / "cluster" / "kuberay" / manifest).read_text())
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    assert spec["authOptions"] == {"mode": "token"}
    if doc["kind"] == "RayJob":  # submitted from the head pod itself: no submitter pod to admit
        assert doc["spec"]["submissionMode"] == "SidecarMode"
    assert policy["apiVersion"] == "networking.k8s.io/v1" and policy["kind"] == "NetworkPolicy"
    ours = policy["spec"]["podSelector"]["matchLabels"]
    templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    assert ours and all(t["metadata"]["labels"].items() >= ours.items() for t in templates)  # it covers every pod
    assert "Ingress" in policy["spec"]["policyTypes"]
    dashboard = int(spec["headGroupSpec"]["rayStartParams"].get("dashboard-port", 8265))
    kinds = []
    for rule in policy["spec"]["ingress"]:
        assert rule.get("from"), rule  # a rule without sources admits every source
        for peer in rule["from"]:
            assert set(peer) <= {"podSelector", "namespaceSelector"}, peer  # no ipBlock
            labels = peer["podSelector"]["matchLabels"]
            if labels == ours:  # the cluster's own pods, of its own namespace
                assert "namespaceSelector" not in peer
                kinds.append("cluster")
            else:
                assert labels == OPERATOR and rule["ports"] == [{"port": dashboard, "protocol": "TCP"}], rule
                # only from the operator's namespace (a placeholder the user sets), never any namespace
                assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "OPERATOR_NAMESPACE"}}
                kinds.append("operator")
    assert sorted(kinds) == ["cluster", "operator"]


def _env():
    # A local Ray writes ~/.ray/auth_token; CLI calls against it then need token mode, and on a
    # fresh machine (no local Ray yet) `ray start` in token mode needs the token made first.
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    if not (Path.home() / ".ray" / "auth_token").exists():
        p = subprocess.run([RAY, "get-auth-token", "--generate"], capture_output=True, text=True, timeout=60, env=env)
        assert p.returncode == 0, p.stdout + p.stderr
    return env


def _ray(*args, timeout=120):
    p = subprocess.run([RAY, *args], capture_output=True, text=True, timeout=timeout, env=_env())
    assert p.returncode == 0, p.stdout + p.stderr
    return p


class OwnHead:
    """A `ray start --head` of this test's, stopped alone: every process of its session (their
    command lines name its session folder), never another Ray of this user (`ray stop` ends all)."""

    def __init__(self, *args, env: dict | None = None):
        """`env`: more environment for the head's processes (its workers inherit it)."""
        before = ray_sessions()
        p = subprocess.Popen([RAY, "start", "--head", "--disable-usage-stats", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env={**_env(), **(env or {})})
        out = p.communicate(timeout=120)[0]
        assert p.returncode == 0, out
        # The session folder ends with the pid of the process that started it; a folder an earlier
        # Ray left (/tmp/ray keeps them) may end with the same pid, reused since: only a new one counts.
        (self.session,) = [s for s in ray_sessions() - before if s.endswith(f"_{p.pid}")]

    def pids(self) -> list[int]:
        return ray_session_pids(self.session)

    def stop(self) -> None:
        stop_ray_session(self.session)


OTHER_JOB = """
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)
@ray.remote(num_cpus=1)
class Holder:
    def ready(self):
        return True
holder = Holder.remote()
ray.get(holder.ready.remote())
print("holding 1 CPU", flush=True)
sys.stdin.read()  # until the test closes stdin: then this job ends and its CPU is free
"""


def test_a_packed_study_on_a_cluster_takes_up_room_that_frees_later(tmp_path):
    """What an autoscaler does to a packed study (pack = 2, 4 trials at once: two executors of one
    CPU), with a cluster whose second CPU is held by another job at the start (as it would be on a
    node not yet up): one executor starts, the other is asked for and waits; once the other job
    lets go, it starts, and TPE proposes for it only then. The executor that trains first holds
    until the other has trained an epoch (tests/inject), so both train trials on any machine."""
    hold = tmp_path / "hold"
    hold.touch()
    (port,) = free_ports(1)  # from the OS: no clash with another Ray on the machine
    head = OwnHead("--num-cpus", "2", "--port", str(port), "--include-dashboard=false", env={
        "PYTHONPATH": os.pathsep.join([INJECT, os.environ.get("PYTHONPATH", "")]),
        "GZSL_INJECT_FAULT": "hold-first-pack", "GZSL_INJECT_HOLD": str(hold)})
    other_job = subprocess.Popen([sys.executable, "-c", OTHER_JOB, f"127.0.0.1:{port}"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert other_job.stdout.readline().strip() == "holding 1 CPU"
        study, results = write_study(tmp_path, name="grow", epochs=2, samples=8, final_seeds=0, grace=2), \
            tmp_path / "results"
        study.write_text(study.read_text().replace("cpu = 1\n", "cpu = 1\npack = 2\n")
                         .replace("max_concurrent = 2", "max_concurrent = 4"))
        proc = subprocess.Popen([sys.executable, "-m", "gzsl.tune", "--study", str(study), "--results", str(results),
                                 "--address", f"127.0.0.1:{port}", "--no-report"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=_env())
        seen = []
        for line in proc.stdout:  # the study has started, on the one free CPU
            seen.append(line)
            if line.startswith("packed trials:") or "Traceback" in line:
                break
        other_job.stdin.close()
        out = "".join(seen) + proc.communicate(timeout=900)[0]
        assert proc.returncode == 0, out
        # The executor that fits starts at once, or, on a loaded machine, after the pool's first 60 s
        # wait (its process still importing torch): then it is reported started with the other asked.
        assert ("packed trials: 1 executor(s) x 2 members" in out and "1 more asked of the cluster" in out) or (
            "packed trials: 0 executor(s) x 2 members" in out and "2 more asked of the cluster" in out), out
        assert "started (2 of 2 up)" in out
        trials = pd.read_parquet(results / "trials.parquet")
        assert len(trials) == 8 and (trials.status == "completed").all()
        assert trials.executor_id.nunique() == 2, trials[["executor_id", "started_at"]]
        assert not hold.exists()  # the second executor trained an epoch while the first held
        # The searcher proposed for the second executor only once it was up: until its first trial
        # began, at most 2 trials were in flight (without the searcher's room, 4 would have been
        # proposed at once, two of them waiting for the second executor from the start).
        first_late = trials[trials.executor_id.str.endswith("-1")].started_at.min()
        before = trials[trials.started_at < first_late]
        assert 1 <= len(before) and max(((before.started_at <= t) & (before.ended_at > t)).sum()
                                        for t in before.started_at) <= 2, trials[["executor_id", "started_at", "ended_at"]]
    finally:
        other_job.kill()
        head.stop()


def test_ray_job_submit_runs_a_study_on_a_head_node(tmp_path):
    """Without --results, a job's results go to ~/gzsl-results/<study> on the head, not into Ray's
    temporary copy of the working dir, where --resume and gzsl.report would not find them."""
    name = f"job{os.getpid()}"
    study = write_study(tmp_path, name=name, epochs=2, samples=2, final_seeds=1, grace=1)
    results = Path.home() / "gzsl-results" / name
    shutil.rmtree(results, ignore_errors=True)
    env = {**_env(), "RAY_ADDRESS": ""}
    # Ports of its own (the dashboard agent's default 52365 is taken by any other Ray on the machine,
    # and then no job can be submitted): a study running beside the suite must not break it.
    gcs, dashboard, agent = free_ports(3)  # from the OS: no clash with another Ray on the machine
    head = OwnHead("--num-cpus", "2", "--port", str(gcs), "--dashboard-host", "127.0.0.1", "--dashboard-port",
                   str(dashboard), "--dashboard-agent-listen-port", str(agent))
    try:
        for _ in range(120):  # the head's job agent may start well after `ray start` returns on a loaded machine
            submit = subprocess.run(
                [RAY, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--working-dir", str(ROOT),
                 "--runtime-env-json", json.dumps({"excludes": [".venv", "results", "reports", ".git", "build", ".whl",
                                                                "docs", "benchmarks"]}),
                 "--", sys.executable, "-m", "gzsl.tune", "--study", str(study), "--address", "auto"],
                capture_output=True, text=True, timeout=800, env=env)
            if "No available agent to submit job" not in submit.stderr:
                break
            time.sleep(2)
        assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
        assert "succeeded" in submit.stdout.lower()
        assert "best configuration:" in submit.stdout
        assert len(pd.read_parquet(results / "trials.parquet")) == 2
        assert len(pd.read_parquet(results / "final.parquet")) == 1
        assert f"results: {results}" in submit.stdout
        assert (Path.home() / "gzsl-results" / "reports" / f"{name}.html").is_file()
    finally:
        head.stop()
        shutil.rmtree(results, ignore_errors=True)
        (Path.home() / "gzsl-results" / "reports" / f"{name}.html").unlink(missing_ok=True)


def test_a_local_study_stays_local_beside_a_leftover_ray_start(tmp_path):
    """A `ray start` cluster left on the machine, running a study of its own: a study without
    --address starts a Ray of its own (ray.init(address=None) would join the leftover, and with
    --num-cpus refuse with a traceback), and stopping that Ray at its end leaves the other cluster
    and its study running to their end (tests/inject holds that study meanwhile)."""
    beside, hold_after = tmp_path / "beside", tmp_path / "hold_after"
    hold_after.write_text("1")  # the study beside holds once it has recorded a trial
    ports = free_ports(1)  # from the OS: no clash with another Ray on the machine
    bystander = OwnHead("--num-cpus", "1", "--port", str(ports[0]), "--include-dashboard=false", env={
        "PYTHONPATH": os.pathsep.join([INJECT, os.environ.get("PYTHONPATH", "")]), "GZSL_INJECT_FAULT": "hold-after",
        "GZSL_INJECT_HOLD": str(beside / "trials.parquet"), "GZSL_INJECT_HOLD_AFTER": str(hold_after)})
    other = None
    try:
        # Trials after the first hold; enough of them that one must, whenever the first is recorded.
        other_study = write_study(tmp_path, name="beside", epochs=2, samples=3, final_seeds=0, grace=1)
        other = subprocess.Popen([sys.executable, "-m", "gzsl.tune", "--study", str(other_study), "--results",
                                  str(beside), "--address", f"127.0.0.1:{ports[0]}", "--no-report"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
        deadline = time.monotonic() + 300
        while not list((beside / "trials.parquet").glob("part-*")) and other.poll() is None:
            assert time.monotonic() < deadline, "the study beside recorded no trial in 300 s"
            time.sleep(0.5)
        assert other.poll() is None, other.communicate()[0][-3000:]  # held, mid-study
        study = write_study(tmp_path, name="local", epochs=2, samples=2, final_seeds=0, grace=1)
        p = subprocess.run([sys.executable, "-m", "gzsl.tune", "--study", str(study), "--results",
                            str(tmp_path / "results"), "--num-cpus", "2", "--no-report", "--no-dashboard"],
                           capture_output=True, text=True, timeout=600,
                           env={k: v for k, v in _env().items() if k != "RAY_ADDRESS"})
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stdout[-2000:] + p.stderr[-3000:]
        assert "Connecting to existing Ray cluster" not in p.stderr
        assert len(pd.read_parquet(tmp_path / "results" / "trials.parquet")) == 2
        assert len(bystander.pids()) >= 3 and other.poll() is None  # the study's own Ray ended alone
        hold_after.unlink()  # the study beside goes on, and ends
        out = other.communicate(timeout=600)[0]
        assert other.returncode == 0, out[-3000:]
        assert len(pd.read_parquet(beside / "trials.parquet")) == 3
    finally:
        if other is not None and other.poll() is None:
            other.kill()
        bystander.stop()
