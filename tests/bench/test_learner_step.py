"""bench/learner_step.py on the lab pair: each variant trains on the same scored batch, and the variants really
differ in what they undo (the attention each learner ran with is recorded from its model)."""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # a subprocess that samples, scores and starts DeepSpeed three times: ~40 s
def test_learner_step_times_each_variant_on_one_batch(tmp_path):
    out = tmp_path / "learner_step.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "learner_step.py"), "--config", "configs/lab_cpu.yaml",
                    "--dtype", "float32", "--prompts", "4", "--rounds", "1", "--steps", "1", "--warmup", "1", "--no-profile",
                    "--variants", "before", "prompt_logits", "now", "--out", str(out)],
                   check=True, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, timeout=600)
    result = json.loads(out.read_text())
    assert result["rows"] == 4 and result["response_tokens"] > 0
    variants = result["variants"]
    assert variants["before"]["attention"] == "sdpa" and variants["now"]["attention"] == "eager"
    assert variants["prompt_logits"]["attention"] == "eager"
    assert all(v["median_s"] > 0 for v in variants.values())
    assert result["speedup_now_over_before"] > 0
