import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LAB = ROOT / "opd_ray" / "lab" / "artifacts"


@pytest.fixture(scope="session")
def tiny_lab(tmp_path_factory):
    """Untrained lab-shaped student and teacher saved with save_pretrained (fast; for plumbing tests)."""
    from opd_ray.lab.models import build_model
    from opd_ray.lab.tokenizer import build_tokenizer

    out = tmp_path_factory.mktemp("tiny_lab")
    tokenizer = build_tokenizer()
    for name, seed in (("student", 1), ("teacher", 2)):
        build_model(name, tokenizer, seed).save_pretrained(out / name)
        tokenizer.save_pretrained(out / name)
    return out


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray with 2 CPUs for the session (token auth stays on; Ray generates the token)."""
    import ray

    # address="local": always a fresh Ray of our own; without it, ray.init() joins whatever cluster another
    # process on this machine last announced in /tmp/ray/ray_current_cluster (`ray start`, cluster_utils).
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
    yield ray
    ray.shutdown()
