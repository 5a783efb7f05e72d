"""Placement by role on a 2-node Ray cluster (`ray.cluster_utils.Cluster`, two raylets on this machine).

Node A offers the custom resource `rollout_node`; node B offers `learner_node` and the label opd-role=train.
The config pins the rollout engine to A (resources), the teacher to B (node labels) and the learner to B
(resources), in one PACK placement group. The test checks, through Ray's actor table, that every actor landed
where asked, and that an OPD step completes. It runs in a subprocess: a driver connects to one cluster, and
the test session's own Ray (tests/conftest.py) must stay up for the other tests.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from opd_ray.config.errors import ConfigError
from tests.actors.loop import tiny_cfg

ROOT = Path(__file__).resolve().parents[2]
PLACED = ["placement.strategy=PACK", "placement.rollout.resources={rollout_node: 0.5}",
          "placement.teacher.node_labels={opd-role: train}", "placement.learner.resources={learner_node: 0.5}",
          "rollout.cpus_per_engine=0.5", "teacher.cpus_per_server=0.5", "learner.cpus_per_rank=1"]


def run_on_two_nodes(tiny_lab: str, out: str) -> None:
    """The subprocess: start the cluster, check the fail-fast errors, train one step, write where actors ran."""
    import ray
    from ray.cluster_utils import Cluster

    from actors.placement import check_cluster_fits
    from opd_ray.config.errors import ConfigError
    from tests.actors.loop import train_with_actors

    # Cluster announces itself in /tmp/ray/ray_current_cluster (and deletes that file at shutdown): every
    # `ray.init()` without an address on this machine would join it meanwhile. Keep it to ourselves.
    ray._private.utils.write_ray_address = lambda *args, **kwargs: None
    ray._common.utils.reset_ray_address = lambda *args, **kwargs: None
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"rollout_node": 1},
                                                            "include_dashboard": False})
    learner_node = cluster.add_node(num_cpus=2, resources={"learner_node": 1}, labels={"opd-role": "train"})
    ray.init(address=cluster.address, runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}})
    errors = {}
    for name, override in (("resource", "placement.rollout.resources={gpu_node: 1}"),
                           ("labels", "placement.teacher.node_labels={opd-role: serve}")):
        try:
            check_cluster_fits(tiny_cfg(Path(tiny_lab), override))
        except ConfigError as err:
            errors[name] = str(err)
    cfg = tiny_cfg(Path(tiny_lab), "run.steps=1", "data.prompts_per_step=4", *PLACED)
    actors, state, seen = train_with_actors(cfg, Path(out), "pl-")
    nodes = {a["Name"]: a["Address"]["NodeID"] for a in ray._private.state.actors().values()
             if a["Name"].startswith("pl-") and a["State"] == "ALIVE"}
    actors.kill()  # the end of a run: the placement group is given back
    group_state = {g["name"]: g["state"] for g in ray.util.placement_group_table().values()}.get("pl-opd-actors")
    result = {"nodes": nodes, "head": cluster.head_node.node_id, "worker": learner_node.node_id,
              "steps": state.step, "tokens": seen[0]["tokens"], "errors": errors, "group_after_kill": group_state}
    (Path(out) / "placement.json").write_text(json.dumps(result))
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow  # a second Ray cluster of three nodes and a whole run, ~40 s: the slow tier, which CI runs
def test_roles_land_on_the_nodes_the_config_asks_for(tiny_lab, tmp_path):
    code = f"from tests.actors.test_placement import run_on_two_nodes; run_on_two_nodes({str(tiny_lab)!r}, " \
           f"{str(tmp_path)!r})"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "placement.json").read_text())
    head, worker = result["head"], result["worker"]
    assert result["nodes"] == {"pl-rollout-0": head, "pl-teacher-0": worker, "pl-learner-0": worker}, result
    assert result["steps"] == 1 and result["tokens"] > 0
    assert result["group_after_kill"] == "REMOVED", result
    assert result["errors"]["resource"].startswith("placement.rollout.resources.gpu_node: the run needs 1 gpu_node")
    assert result["errors"]["labels"].startswith("placement.teacher.node_labels: no node")


@pytest.mark.parametrize("override, field", [
    ("placement.strategy=ANYWHERE", "placement.strategy"),
    ("placement.rollout.num_gpus=-1", "placement.rollout.num_gpus"),
    ("placement.learner.resources={CPU: 2}", "placement.learner.resources.CPU"),
    ("placement.teacher.resources={teacher_node: 0}", "placement.teacher.resources.teacher_node"),
])
def test_bad_placement_is_refused_before_ray_naming_the_field(tiny_lab, override, field):
    with pytest.raises(ConfigError, match=f"^{field}"):
        tiny_cfg(tiny_lab, override)


def test_without_a_strategy_each_actor_asks_ray_for_its_own_resources_and_labels(tiny_lab):
    """The path without a placement group (no Ray needed to build the options)."""
    from actors.placement import Placement

    cfg = tiny_cfg(tiny_lab, *PLACED[1:], "placement.learner.num_gpus=1")
    placement = Placement(cfg)
    assert placement.group is None and placement.learner_rendezvous(10)[0] == "127.0.0.1"  # one rank: itself
    assert placement.options("rollout", 0) == dict(num_cpus=0.5, num_gpus=0.0, resources={"rollout_node": 0.5})
    assert placement.options("teacher", 0) == dict(num_cpus=0.5, num_gpus=0.0, resources=None,
                                                    label_selector={"opd-role": "train"})
    assert placement.options("learner", 0) == dict(num_cpus=1.0, num_gpus=1.0, resources={"learner_node": 0.5})


def test_a_learner_of_several_ranks_gets_a_placement_group_of_its_own(ray_cluster, tiny_lab):
    """Without placement.strategy, two learner ranks are still reserved together (placement.learner_strategy), so
    that rank 0's node is known before they start; the port is found free on that node, by a task placed there."""
    from actors.placement import Placement

    cfg = tiny_cfg(tiny_lab, "learner.num_ranks=2", "learner.cpus_per_rank=0.5")
    placement = Placement(cfg, "two-ranks")
    try:
        placement.wait(60)
        assert set(placement.bundle_of) == {("learner", 0), ("learner", 1)}  # engines and teachers stay free
        assert "scheduling_strategy" not in placement.options("rollout", 0)
        assert placement.options("learner", 1)["scheduling_strategy"].placement_group_bundle_index == 1
        address, port = placement.learner_rendezvous(60)
        assert address == ray_cluster.util.get_node_ip_address() and 1024 < port < 65536
        table = ray_cluster.util.placement_group_table(placement.group)
        assert table["strategy"] == "PACK" and table["name"] == "two-ranks-learner"
    finally:
        placement.release()
