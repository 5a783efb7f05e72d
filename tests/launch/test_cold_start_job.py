"""`stages: [cold_start, opd]` end to end through launch/opd_job.py (slow tier: two DeepSpeed groups in a row).

The lab teacher generates answers, the filters keep them, the learner group SFT-trains the student, the export
becomes the OPD student, and the summary reports the recovery from the original student.
"""
import pytest

from tests.launch.cold_start_run import run_cold_start_job


@pytest.mark.slow
def test_cold_start_then_opd(tmp_path):
    stage, summary, stdout = run_cold_start_job(tmp_path, "lab_cpu.yaml", prompts=32, sft_steps=3)
    assert "gap_recovery_from_original" in summary
    assert "[cold start] SFT 3 steps" in stdout
