"""The cold start with vLLM engines (vllm tier, .venv-vllm): the teacher's answers come from a vLLM engine
serving the teacher's weights, the DeepSpeed group SFT-trains the student, and OPD then starts from the export
with a vLLM rollout engine and a vLLM teacher."""
import pytest

from tests.launch.cold_start_run import run_cold_start_job


@pytest.mark.vllm
def test_cold_start_with_vllm_engines(tmp_path):
    stage, _, _ = run_cold_start_job(tmp_path, "lab_cpu_vllm.yaml", prompts=48, sft_steps=4)
    assert stage["kept"] > 0
    # the incompatible teacher writes right to left: the SFT data is its own format, and correct
    assert stage["kept_correct"] > 0.9 and stage["sft_nll_last"] < stage["sft_nll_first"]
