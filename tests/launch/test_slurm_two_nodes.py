"""Slurm -> Ray -> OPD across two nodes: `sbatch --nodes=2 launch/slurm/opd.sbatch` on the two-node Slurm of
launch/slurm/two_node_cluster.sh, whose nodes are network namespaces with their own addresses and hostnames.

The batch script's multi-node half runs for real here: the srun step that starts a Ray worker on the other node,
the head's address, the token reaching the worker, the wait for both nodes, the teardown of both. The OPD run pins
its roles to nodes through `placement.<role>.node_labels.slurm-node`, and summary.json says where each actor ran.
Then node 2's Ray is killed mid-run. Its engine and teacher, pinned to it, cannot be replaced: the run must end with
that error, a failed Slurm job and its last checkpoint intact, within the configured timeouts. Only preferred there
(`prefer_node_labels`), they are replaced on node 1 and the run goes on. And two learner ranks that cannot share a
node meet at rank 0's node and train in step.

Root only (network namespaces). CI sets OPD_REQUIRE_SLURM=1: there a missing Slurm or a non-root run fails.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.launch.ray_head import private_home_env
from tests.launch.test_preemption import wait_for_step
from tests.launch.test_slurm import start_dev_cluster

# whole jobs under Slurm: the slow tier, which CI runs with its Slurm clusters up (make test-slow)
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "launch" / "slurm" / "two_node_cluster.sh"
NODES = {"opd-n1": "10.77.0.2", "opd-n2": "10.77.0.3"}  # two_node_cluster.sh's names and addresses
PIN = ["placement.learner.node_labels.slurm-node=opd-n1", "placement.rollout.node_labels.slurm-node=opd-n2",
       "placement.teacher.node_labels.slurm-node=opd-n2"]


def our_processes(needle: str) -> list[str]:
    """Command lines of running processes that mention `needle` (a path only this test's daemons and jobs use)."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in out if needle in line and "ps -eo" not in line]


@pytest.fixture(scope="module")
def two_nodes():
    missing = "sbatch not found" if shutil.which("sbatch") is None else \
        "network namespaces need root" if os.geteuid() != 0 else None
    yield start_dev_cluster(CLUSTER, missing)
    stopped = subprocess.run([str(CLUSTER), "stop"], capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(line.split()[0] in NODES for line in netns.splitlines() if line.strip()), netns
    assert subprocess.run(["ip", "link", "show", "opd-br0"], capture_output=True).returncode != 0
    assert our_processes("/tmp/opd-slurm2") == []  # slurmctld and both slurmd
    assert our_processes("/tmp/ray-slurm-") == []  # every raylet, GCS and worker the jobs started


def sbatch_command(tmp_path: Path, tiny_lab: Path, out_dir: Path, *overrides: str, pin=tuple(PIN)) -> list[str]:
    return ["sbatch", "--wait", "--nodes=2", f"--output={tmp_path}/slurm-%j.out", "--cpus-per-task=2", "--time=20",
            str(ROOT / "launch" / "slurm" / "opd.sbatch"), "--config", "configs/lab_cpu.yaml",
            f"model.student={tiny_lab / 'student'}", f"model.teacher={tiny_lab / 'teacher'}",
            "data.prompts_per_step=8", "data.eval_size=8", "eval.avg_k=0", "data.continuation_depths=[]",
            "rollout.max_new_tokens=16", "ckpt.export_hf=false", f"run.out_dir={out_dir}", *pin, *overrides]


def test_two_node_sbatch_places_each_role_on_its_node(two_nodes, tiny_lab, tmp_path):
    out_dir = tmp_path / "runs"
    env = {**private_home_env(tmp_path), "SLURM_CONF": two_nodes, "OPD_PYTHON": sys.executable}
    job = subprocess.run(sbatch_command(tmp_path, tiny_lab, out_dir, "run.steps=2"), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    log = next(tmp_path.glob("slurm-*.out")).read_text()
    assert job.returncode == 0, job.stderr[-2000:] + log[-4000:]
    # Ray saw two alive nodes, each at its own namespace's address (token auth is on: the worker had the token)
    sbatch_lines = "\n".join(line for line in log.splitlines() if line.startswith("[opd.sbatch]"))
    assert "all 2 node(s) joined: opd-n1 10.77.0.2, opd-n2 10.77.0.3" in log, sbatch_lines
    assert ": succeeded" in log, log[-3000:]
    summary = json.loads(next(out_dir.glob("*/summary.json")).read_text())
    assert summary["steps"] == 2
    assert summary["actor_nodes"] == {"learner-0": NODES["opd-n1"], "rollout-0": NODES["opd-n2"],
                                      "teacher-0": NODES["opd-n2"]}


def kill_ray_on(node: str) -> list[int]:
    """kill -9 every process of the node's namespace but Slurm's own: its raylet, GCS client, workers, agents."""
    pids = subprocess.run(["ip", "netns", "pids", node], capture_output=True, text=True).stdout.split()
    killed = []
    for pid in map(int, pids):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() in ("slurmd", "slurmstepd"):
                continue
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return killed


def test_losing_node_two_ends_the_run_with_its_checkpoint_in_bounded_time(two_nodes, tiny_lab, tmp_path):
    """Node 2's Ray dies mid-run. Its engine and teacher are pinned there (placement), so no replacement can start:
    the run stops with an error naming them, the Slurm job fails, the last periodic checkpoint stays loadable."""
    out_dir, startup_timeout_s = tmp_path / "runs", 60
    env = {**private_home_env(tmp_path), "SLURM_CONF": two_nodes, "OPD_PYTHON": sys.executable}
    command = sbatch_command(tmp_path, tiny_lab, out_dir, "run.steps=200", "ckpt.save_every=2",
                             "pipeline.rollout_timeout_s=30", "pipeline.teacher_timeout_s=30",
                             f"pipeline.startup_timeout_s={startup_timeout_s}")
    sbatch = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step(out_dir, 5, sbatch)
        assert sbatch.poll() is None, "the run ended before node 2 was killed"
        t_kill = time.monotonic()
        assert kill_ray_on("opd-n2"), "no Ray process found on node 2"
        returncode = sbatch.wait(timeout=600)
    finally:
        cancel_if_running(sbatch, env)
    elapsed = time.monotonic() - t_kill
    log = next(tmp_path.glob("slurm-*.out")).read_text()
    print(f"node 2 killed -> Slurm job ended (rc {returncode}) in {elapsed:.1f} s")
    assert returncode != 0, log[-4000:]
    assert "cannot be replaced: no alive Ray node has its node_labels {'slurm-node': 'opd-n2'}" in log, log[-4000:]
    assert ": failed" in log, log[-3000:]
    # defined and bounded: well within the timeouts the run was given (a startup wait, plus the job's teardown)
    assert elapsed < startup_timeout_s + 90, log[-3000:]
    (run_dir,) = [p for p in out_dir.iterdir() if not p.name.startswith('.')]  # the run, not .frozen_evals
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    assert int(latest.removeprefix("step_")) >= 4 and (run_dir / "checkpoints" / latest).is_dir(), latest


def run_sbatch(command: list[str], tmp_path: Path, two_nodes: str) -> str:
    env = {**private_home_env(tmp_path), "SLURM_CONF": two_nodes, "OPD_PYTHON": sys.executable}
    job = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    log = next(tmp_path.glob("slurm-*.out")).read_text()
    assert job.returncode == 0, job.stderr[-2000:] + log[-4000:]
    return log


def test_two_learner_ranks_on_two_nodes_meet_at_rank_zero_and_train_in_step(two_nodes, tiny_lab, tmp_path):
    """1.5 CPUs per rank, 2 per node: the ranks cannot share a node, and no placement.strategy is set. The learner's
    own placement group names rank 0's node before either rank starts; they meet there, on a port free there."""
    out_dir = tmp_path / "runs"
    run_sbatch(sbatch_command(tmp_path, tiny_lab, out_dir, "run.steps=2", "learner.num_ranks=2",
                              "learner.cpus_per_rank=1.5", pin=()), tmp_path, two_nodes)
    summary = json.loads(next(out_dir.glob("*/summary.json")).read_text())
    nodes = summary["actor_nodes"]
    assert summary["steps"] == 2 and {nodes["learner-0"], nodes["learner-1"]} == set(NODES.values()), nodes
    assert summary["learner_ranks_agree"] is True  # the same weights, byte for byte, on both nodes


def last_step(out_dir: Path) -> int:
    rows = [json.loads(line) for line in next(out_dir.glob("*/metrics.jsonl")).read_text().splitlines()]
    return max(r["step"] for r in rows if "reverse_kl" in r)


def lose_node_two(out_dir: Path, sbatch: subprocess.Popen) -> tuple[int, float, int]:
    """Kill node 2's Ray after step 5; (the last step before, seconds to the next finished step, the job's status)."""
    wait_for_step(out_dir, 5, sbatch)
    assert sbatch.poll() is None, "the run ended before node 2 was killed"
    t_kill = time.monotonic()
    assert kill_ray_on("opd-n2"), "no Ray process found on node 2"
    killed_after = last_step(out_dir)
    while last_step(out_dir) == killed_after and sbatch.poll() is None and time.monotonic() - t_kill < 600:
        time.sleep(0.1)
    return killed_after, time.monotonic() - t_kill, sbatch.wait(timeout=600)


def cancel_if_running(sbatch: subprocess.Popen, env: dict) -> None:
    """A failed test must not leave its job holding the two nodes (`sbatch --wait` ending does not cancel it)."""
    if sbatch.poll() is None:
        subprocess.run(["scancel", "--name=opd"], env=env, timeout=60)
        sbatch.wait(timeout=120)


def test_losing_node_two_replaces_its_engine_and_teacher_on_node_one_and_goes_on(two_nodes, tiny_lab, tmp_path):
    """The engine and the teacher only prefer node 2 (`prefer_node_labels`); the learner is pinned to node 1, which
    has room for all three. Node 2's Ray dies mid-run: both are replaced on node 1, their shards re-issued under the
    same ids, and the run finishes. Measured: the time from the loss to the next finished step."""
    out_dir, steps = tmp_path / "runs", 14
    env = {**private_home_env(tmp_path), "SLURM_CONF": two_nodes, "OPD_PYTHON": sys.executable}
    prefer = ["placement.learner.node_labels.slurm-node=opd-n1",
              "placement.rollout.prefer_node_labels.slurm-node=opd-n2",
              "placement.teacher.prefer_node_labels.slurm-node=opd-n2"]
    command = sbatch_command(tmp_path, tiny_lab, out_dir, f"run.steps={steps}", "ckpt.save_every=4",
                             "pipeline.rollout_timeout_s=30", "pipeline.teacher_timeout_s=30",
                             "pipeline.startup_timeout_s=120", pin=prefer)
    sbatch = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        killed_after, to_next_step, returncode = lose_node_two(out_dir, sbatch)
    finally:
        cancel_if_running(sbatch, env)
    log = next(tmp_path.glob("slurm-*.out")).read_text()
    print(f"node 2 killed after step {killed_after} -> step {killed_after + 1} finished {to_next_step:.1f} s later")
    assert returncode == 0, log[-4000:]
    assert f"rollout-0 {NODES['opd-n2']}, teacher-0 {NODES['opd-n2']}" in log, log[-3000:]  # where they started
    assert "replacing it" in log, log[-4000:]
    (run_dir,) = [p for p in out_dir.iterdir() if not p.name.startswith('.')]  # the run, not .frozen_evals
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == steps and set(summary["actor_nodes"].values()) == {NODES["opd-n1"]}, summary
    assert summary["actor_nodes_at_start"]["rollout-0"] == NODES["opd-n2"]
    final = json.loads((run_dir / "checkpoints" / f"step_{steps}" / "state.json").read_text())
    assert final["consumed"] == {"floor": steps * 8, "above": [], "count": steps * 8}  # every id once
