import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LAB = ROOT / "opd_ray" / "lab" / "artifacts"
LAB_CFG = ROOT / "configs" / "lab_cpu.yaml"  # the CPU lab default


def scored_lab_batch(n: int, problem_seed: int, top_k: int = 4, max_new_tokens: int = 40):
    """`n` trajectories of the trained lab student (problems of 2-5 terms), scored by the trained lab teacher with
    a float32 payload, top-k lists of `top_k` on both sides. Returns (teacher, scored batch)."""
    from opd_ray.engines.hf_rollout import HFRollout
    from opd_ray.engines.hf_teacher import HFTeacher
    from opd_ray.lab.task import sample_problems

    rollout = HFRollout(str(LAB / "student"), max_new_tokens=max_new_tokens, temperature=1.0, top_k=top_k, run_seed=0)
    prompts = [rollout.tokenizer(p.prompt)["input_ids"] for p in sample_problems(problem_seed, n, (2, 5))]
    batch = rollout.generate(prompts, [(0, i, 0) for i in range(n)], 0)
    teacher = HFTeacher(str(LAB / "teacher"), top_k=top_k, temperature=1.0, max_new_tokens=max_new_tokens,
                        logprob_dtype="float32")
    return teacher, teacher.score(batch)


def lab_learner(objective=None, learner=None, model_options=None):
    """A one-rank DeepSpeed learner (gloo, in this process) on the trained lab student."""
    from opd_ray.config.schema import LearnerConfig, ObjectiveConfig
    from opd_ray.learner.deepspeed_rank import DeepSpeedLearner
    from opd_ray.runtime.process import free_port

    return DeepSpeedLearner(str(LAB / "student"), learner or LearnerConfig(lr=1e-3), objective or ObjectiveConfig(),
                            rank=0, world_size=1, master_addr="127.0.0.1", master_port=free_port(), temperature=1.0,
                            seed=0, model_options=model_options)


@pytest.fixture
def no_network(monkeypatch):
    """Every outgoing connection fails, and is recorded: a check that must not touch the network asserts the
    list stays empty (instead of timing itself, which measures the machine)."""
    attempts = []

    def refuse(sock, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"no network in this test (connect to {address})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.fixture
def no_weights(monkeypatch):
    """Loading a model's weights fails, and is recorded: the driver's checks read config.json, tokenizers and
    safetensors headers only."""
    from transformers import PreTrainedModel

    loads = []

    def refuse(cls, *args, **kwargs):
        loads.append(args[0] if args else kwargs)
        raise AssertionError("a model's weights were loaded")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", classmethod(refuse))
    return loads


@pytest.fixture(scope="session")
def tiny_lab(tmp_path_factory):
    """Untrained lab-shaped student and teacher saved with save_pretrained (fast; for plumbing tests)."""
    from opd_ray.lab.tiny_models import build_model
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


REAL_SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct"


@pytest.fixture(scope="session")
def tiny_smol(tmp_path_factory):
    """Untrained tiny student and teacher on SmolLM2's real tokenizer (49,152 ids, ChatML chat template)."""
    from opd_ray.lab.real_models import tiny_random_model

    out = tmp_path_factory.mktemp("tiny_smol")
    for name, seed in (("student", 1), ("teacher", 2)):
        tiny_random_model(out_dir=out / name, seed=seed)
    return out


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct from `make real-models` (CI builds it first; OPD_REQUIRE_REAL_MODELS=1 makes
    its absence a failure, not a skip)."""
    from opd_ray.lab.real_models import is_complete

    if not is_complete(REAL_SMOLLM2):
        message = f"{REAL_SMOLLM2} not built: run `make real-models`"
        if os.environ.get("OPD_REQUIRE_REAL_MODELS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return REAL_SMOLLM2
