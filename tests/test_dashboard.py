"""The Ray dashboard of a running local study, opened as a person opens it: the link the study
prints, the token it says how to get, then the job under its name."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gzsl.report.screenshot import CHROMIUM_ARGS, find_chromium
from tests.test_study import INJECT, write_study

CHROMIUM = find_chromium()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_dashboard_of_a_running_study_shows_its_job_by_name_once_given_the_token(tmp_path):
    from playwright.sync_api import sync_playwright

    # Every epoch waits while the hold file exists (tests/inject "hold-while"): the study is still
    # running whenever the browser looks, however slow this machine is, and costs no CPU meanwhile.
    hold = tmp_path / "hold"
    hold.touch()
    study = write_study(tmp_path, name="dash", epochs=4, samples=2, final_seeds=0, grace=4)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([INJECT, os.environ.get("PYTHONPATH", "")]),
           "GZSL_INJECT_FAULT": "hold-while", "GZSL_INJECT_HOLD": str(hold)}
    proc = subprocess.Popen([sys.executable, "-m", "gzsl.tune", "--study", str(study), "--results",
                             str(tmp_path / "results"), "--num-cpus", "2", "--no-report"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("Ray dashboard:") or "Traceback" in line:
                break
        link = re.search(r"Ray dashboard: (http://\S+)", "".join(seen))
        assert link, "".join(seen)
        url = link.group(1)
        token_file = Path.home() / ".ray" / "auth_token"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.goto(f"{url}/#/jobs")
            if "ray get-auth-token" in seen[-1]:  # token auth: the page asks, the printed line says where it is
                page.get_by_text("Authentication Token Required").wait_for(timeout=300_000)
                page.get_by_placeholder("Enter your authentication token").fill(token_file.read_text().strip())
                page.get_by_role("button", name="Submit").click()
            page.get_by_text("gzsl.tune dash").first.wait_for(timeout=300_000)  # the job, by its name
            if os.environ.get("GZSL_SCREENSHOTS"):  # a folder: keep what the test saw, to look at
                page.screenshot(path=str(Path(os.environ["GZSL_SCREENSHOTS"]) / "dashboard-jobs.png"))
            browser.close()
        assert proc.poll() is None  # the study was running all along
    finally:
        hold.unlink(missing_ok=True)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the study saves its state and stops
        try:
            proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
