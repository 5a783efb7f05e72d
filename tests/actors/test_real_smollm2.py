"""Two OPD steps through the actors (HF rollout engine, HF teacher, DeepSpeed learner, weight sync) with the real
SmolLM2-135M-Instruct (`make real-models`) as both student and teacher, on the shipped JSONL sums in its chat
template. A model distilled from itself starts at reverse KL ~ 0 and full top-k overlap; the math verifier
credits the real model's own answers."""
import json

from launch import opd_job
from tests.conftest import ROOT

SUMS = ROOT / "tests" / "data" / "sums"


def test_two_opd_steps_with_the_real_smollm2(ray_cluster, smollm2, tmp_path):
    out = tmp_path / "runs"
    assert opd_job.main([
        "--config", str(ROOT / "configs" / "lab_cpu.yaml"), f"model.student={smollm2}", f"model.teacher={smollm2}",
        "data.task=dataset", f"data.train_files=[{SUMS / 'train.jsonl'}]", f"data.eval_files={{easy: {SUMS / 'easy.jsonl'}}}",
        "data.max_prompt_tokens=96", "rollout.max_new_tokens=40", "run.steps=2", "data.prompts_per_step=4",
        "objective.k=16", "eval.avg_k=0", "data.continuation_depths=[]", "learner.lr=1e-5",
        "learner.cpus_per_rank=0.5", "ckpt.export_hf=false", f"run.out_dir={out}"]) == 0
    (run_dir,) = [p for p in out.iterdir() if not p.name.startswith('.')]  # the run, not .frozen_evals
    steps = [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "reverse_kl" in r]
    assert [r["step"] for r in steps] == [1, 2]
    first = steps[0]
    print(f"SmolLM2 -> itself: step 1 reverse KL {first['reverse_kl']:.2e}, overlap ratio {first['overlap_ratio']:.3f}; "
          f"step 2 reverse KL {steps[1]['reverse_kl']:.2e}")
    assert abs(first["reverse_kl"]) < 1e-3, first["reverse_kl"]  # the student is the teacher: KL ~ 0
    assert first["overlap_ratio"] > 0.95 and first["tokens"] > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["teacher"] >= 0.25, summary["eval"]  # SmolLM2 answers some single-digit sums (math-verify)
    assert summary["student_before"] == summary["teacher"]  # the same model, decoded greedily the same way
    assert summary["steps"] == 2 and summary["trajectories"] == 8
