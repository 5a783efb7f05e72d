"""`opd-ray report` on a real (tiny) run directory, rendered in headless Chromium: every figure must load."""
import os
import shutil
import subprocess
import sys

import pytest

from actors.group import create_actors
from launch import opd_job
from opd_ray.run import job, preflight, report
from tests.actors.loop import tiny_cfg

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    """Debian's chromium; the test set-up installs it when it may (root with apt), as .ci/run does."""
    path = shutil.which("chromium")
    if path is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, capture_output=True, timeout=900)
        path = shutil.which("chromium")
    if path is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium); .ci/run installs it")
    return path


@pytest.fixture(scope="module")
def run_dir(ray_cluster, tiny_lab, tmp_path_factory):
    """A 4-step run through the real job code: metrics.jsonl, eval_before.json, summary.json."""
    out = tmp_path_factory.mktemp("report_run")
    cfg = tiny_cfg(tiny_lab, "run.steps=4", "data.prompts_per_step=8", "data.eval_size=8",
                   "objective.diagnostics_every=2", "learner.cpus_per_rank=0.5", f"run.out_dir={out}")
    run_dir = opd_job.make_run_dir(cfg)
    job.run(cfg, preflight.prepare(cfg), run_dir, create_actors, name_prefix="report-")
    return run_dir


def test_report_writes_every_figure_and_chromium_loads_them(run_dir, tmp_path):
    page = report.write_report(run_dir, compare=[run_dir])
    pngs = sorted(p.name for p in page.parent.glob("*.png"))
    one_teacher = [stem for stem in report.FIGURES if stem != "teachers"]  # drawn for runs of several teachers
    assert pngs == sorted(f"{stem}.png" for stem in one_teacher)
    html_text = page.read_text()
    assert "http://" not in html_text and "https://" not in html_text  # self-contained
    dom = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    n = len(one_teacher)
    assert f'data-figures="{n}"' in dom and f'data-figures-loaded="{n}"' in dom, dom[:300]


def test_report_cli_and_clear_error_for_a_non_run_directory(run_dir, tmp_path):
    cli = [sys.executable, "-m", "opd_ray.run.cli", "report"]
    done = subprocess.run(cli + [str(run_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and (run_dir / "report" / "report.html").is_file(), done.stderr
    bad = subprocess.run(cli + [str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "no metrics.jsonl" in bad.stderr
