"""Several teachers, real actors: every trajectory is scored by the teacher its row names, through a killed teacher
server (replaced; only that teacher's shard is rescored), a learner restart and a `--resume`; an elastic pool grows
when its teacher is slowed on cue and shrinks back when the slowdown ends. Slow tier: whole multi-actor runs."""
import json
import os
import signal

import pytest
import ray

from opd_ray.lab.task import sample_problems
from opd_ray.lab.tiny_models import build_model
from opd_ray.lab.tokenizer import build_tokenizer
from opd_ray.loop.checkpoint import CheckpointDir
from opd_ray.loop.prompt_stream import PromptStream
from opd_ray.models.loading import load_tokenizer
from opd_ray.run.preflight import build_task, load_config
from tests.actors.loop import train_with_actors
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
STEPS, BATCH = 6, 8


@pytest.fixture(scope="module")
def two_teachers(tiny_lab, tmp_path_factory):
    """The tiny student, two tiny teachers (sum, digits), and rows of both skills that name their teacher."""
    out = tmp_path_factory.mktemp("two_teachers")
    tokenizer = build_tokenizer()
    build_model("teacher", tokenizer, 3).save_pretrained(out / "digits")
    tokenizer.save_pretrained(out / "digits")
    rows = [{"prompt": p.prompt, "answer": str(p.answer), "teacher": "sum"} for p in sample_problems(5, 40, (2, 3))]
    rows += [{"prompt": p.prompt, "answer": str(p.answer), "teacher": "digits"}
             for p in sample_problems(6, 24, (2, 3), "digits")]
    (out / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    held_out = sample_problems(7, 4, (2, 3))
    (out / "eval.jsonl").write_text("".join(json.dumps({"prompt": p.prompt, "answer": str(p.answer)}) + "\n"
                                            for p in held_out))
    return out


def mopd_cfg(tiny_lab, files, *overrides):
    return load_config(ROOT / "configs" / "lab_mopd.yaml", [
        f"model.student={tiny_lab / 'student'}", f"teachers.sum.model={tiny_lab / 'teacher'}",
        f"teachers.digits.model={files / 'digits'}", f"data.train_files={files / 'train.jsonl'}",
        f"data.eval_files={{held_out: {{files: {files / 'eval.jsonl'}, teacher: sum}}}}",
        "rollout.max_new_tokens=16", "learner.lr=1e-2", f"run.steps={STEPS}", f"data.prompts_per_step={BATCH}",
        "learner.cpus_per_rank=0.5", "rollout.cpus_per_engine=0.25", "teacher.cpus_per_server=0.25",
        "pipeline.max_staleness=0", *overrides])


def expected_teacher_counts(cfg, state) -> dict[str, int]:
    """Trajectories per teacher of every id the ledger says was consumed, from the rows' own teacher field."""
    prompts = build_task(cfg, load_tokenizer(cfg.model.student)).train
    stream = PromptStream(prompts, cfg.data.samples_per_prompt, 0)
    assert not state.consumed.above and state.consumed.floor == state.consumed.count  # ids 0..count-1, once each
    counts: dict[str, int] = {}
    for serial in range(state.consumed.count):
        teacher = prompts[stream.traj_id(serial)[1]].teacher
        counts[teacher] = counts.get(teacher, 0) + 1
    return counts


def logged_counts(by_step: dict[int, dict]) -> dict[str, int]:
    return {t: int(sum(m[f"teacher/{t}/trajectories"] for m in by_step.values())) for t in ("sum", "digits")}


@pytest.fixture(scope="module")
def faulted_run(ray_cluster, tiny_lab, two_teachers, tmp_path_factory):
    """6 steps; teacher-digits-0 is killed after step 1; learner rank 0 exits at its 4th step (the group restarts
    from the step-2 checkpoint). Returns the config, the loop state, the metrics of each step as finally kept, every
    step's metrics in order (replays included) and the checkpoints."""
    cfg = mopd_cfg(tiny_lab, two_teachers, "ckpt.save_every=2", "ckpt.keep_last=3",
                   "run.fault=learner_step:rank=0,step=4,gen=0,action=exit")
    run_dir = tmp_path_factory.mktemp("mopd_faults")
    ckpt, by_step, seen = CheckpointDir(run_dir / "checkpoints", 3), {}, []

    def on_step(actors, state, metrics):
        by_step[state.step] = metrics
        seen.append(metrics)
        if state.step == 1 and len(seen) == 1:
            os.kill(ray.get(actors.pool("teacher:digits")[0].pid.remote()), signal.SIGKILL)

    actors, state, _ = train_with_actors(cfg, run_dir, "mf-", ckpt=ckpt, on_step=on_step)
    actors.kill()
    return cfg, state, by_step, seen, ckpt


def test_a_killed_teacher_server_is_replaced_and_only_its_teachers_shard_rescored(faulted_run):
    cfg, state, by_step, seen, _ = faulted_run
    assert state.health.restarts == {"mf-teacher-digits-0": 1}
    assert by_step[STEPS]["teacher/digits/restarts"] == 1 and by_step[STEPS]["teacher/sum/restarts"] == 0
    assert state.health.reissued == seen[1]["teacher/digits/trajectories"]  # step 2's digits rows: rescored
    assert 0 < state.health.reissued < BATCH


def test_every_trajectory_is_consumed_once_and_scored_by_the_teacher_its_row_names(faulted_run):
    """The controller refuses a batch scored by another teacher than its rows name (teacher_accounting.check_routing);
    here the counts per teacher, summed over the kept steps, equal the rows' own teachers for every consumed id."""
    cfg, state, by_step, seen, _ = faulted_run
    assert len(seen) > STEPS  # the learner restart replayed steps 3 and 4
    assert state.step == STEPS and state.consumed.count == STEPS * BATCH
    counts = expected_teacher_counts(cfg, state)
    assert logged_counts(by_step) == counts and set(counts) == {"sum", "digits"}
    shares = [by_step[s]["teacher/sum/token_share"] + by_step[s]["teacher/digits/token_share"] for s in by_step]
    assert shares == pytest.approx([1.0] * STEPS)


def test_a_resume_scores_every_row_with_its_teacher_and_repeats_the_losses(faulted_run, tiny_lab, two_teachers,
                                                                           tmp_path):
    cfg, state, by_step, _, ckpt = faulted_run
    step4 = ckpt.root / "step_4"
    actors, resumed, seen = train_with_actors(mopd_cfg(tiny_lab, two_teachers), tmp_path / "resumed", "mr-",
                                              resume_from=step4)
    actors.kill()
    assert [m["loss"] for m in seen] == [by_step[s]["loss"] for s in (5, 6)]
    assert resumed.consumed.state_dict() == state.consumed.state_dict()
    assert expected_teacher_counts(cfg, resumed) == expected_teacher_counts(cfg, state)
    assert [m["teacher/digits/trajectories"] for m in seen] == [by_step[s]["teacher/digits/trajectories"] for s in (5, 6)]


def test_a_slowed_teacher_gets_a_second_server_and_gives_it_back_when_the_slowdown_ends(
        ray_cluster, tiny_lab, two_teachers, tmp_path, capsys):
    """teacher digits sleeps 1.5 s per shard while versions 0-4 are scored; two digits shards per step queue at its
    one server (scale up after 2 steps of waiting); later its two servers sit idle (scale down after 4 steps)."""
    cfg = mopd_cfg(tiny_lab, two_teachers, "run.steps=14", "rollout.shards_per_engine=2",
                   "teachers.digits.max_servers=2", "mopd.scale_up_wait_share=0.2",
                   "run.fault=teacher_score:teacher=digits,version=0-4,action=sleep,seconds=1.5")
    actors, state, seen = train_with_actors(cfg, tmp_path / "elastic", "el-")
    actors.kill()
    servers = [int(m["teacher/digits/servers"]) for m in seen]
    grew = servers.index(2) + 1  # the step after which the second server joined
    assert grew <= 4, servers
    assert servers[-1] == 1 and 2 in servers[grew - 1:] and servers.index(1, grew) + 1 > 5, servers
    assert "teacher/sum/servers" not in seen[0]  # a fixed pool (no max_servers) is not resized
    out = capsys.readouterr().out
    assert "[opd] teacher digits: 1 -> 2 servers (a shard waited" in out
    assert "[opd] teacher digits: 2 -> 1 servers (busy" in out
    assert state.health.restarts == {}  # growing and shrinking is not a failure
