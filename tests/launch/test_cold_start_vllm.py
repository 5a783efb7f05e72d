"""The cold start and OPD with vLLM engines (vllm tier, .venv-vllm): the teacher's answers come from a vLLM engine
serving the teacher's weights, the DeepSpeed group SFT-trains the student, and OPD then starts from the export
with a vLLM rollout engine and a vLLM teacher. Each OPD step samples with the weights the learner just synced, and
the final HF export decodes the same greedy tokens in transformers and in vLLM."""
import json
import math
from pathlib import Path

import pytest

from tests.launch.cold_start_run import run_cold_start_job


@pytest.mark.vllm
def test_cold_start_then_opd_with_vllm_engines(tmp_path):
    # strictly on-policy: step 2 then samples from version 1, which the engine holds only if the sync into vLLM worked
    stage, summary, _ = run_cold_start_job(tmp_path, "lab_cpu_vllm.yaml", "pipeline.max_staleness=0", prompts=48,
                                           sft_steps=4)
    assert stage["kept"] > 0
    # the incompatible teacher writes right to left: the SFT data is its own format, and correct
    assert stage["kept_correct"] > 0.9 and stage["sft_nll_last"] < stage["sft_nll_first"]

    run_dir = Path(summary["checkpoint"]).parents[1]
    steps = [m for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in m]
    assert [(m["step"], m["policy_version"], m["staleness"], m["engines_fresh"], m["failed_syncs"]) for m in steps] \
        == [(1, 1, 0, 1, 0), (2, 2, 0, 1, 0)]
    assert all(math.isfinite(m["loss"]) and math.isfinite(m["overlap_ratio"]) for m in steps)

    from opd_ray.engines.hf_rollout import HFRollout
    from opd_ray.engines.vllm_engines import VLLMRollout
    from opd_ray.lab.task import sample_problems

    export = summary["student_export"]
    kw = dict(max_new_tokens=16, temperature=1.0, top_k=4, run_seed=0)
    hf, vl = HFRollout(export, **kw), VLLMRollout(export, **kw)
    prompts = [hf.tokenizer(p.prompt)["input_ids"] for p in sample_problems(3, 16, (2, 5))]
    assert hf.greedy(prompts) == vl.greedy(prompts)
