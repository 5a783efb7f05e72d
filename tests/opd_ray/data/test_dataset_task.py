"""The `dataset` task without Ray: rendering through the chat template, length filter, leakage, contract checks."""
import json
import shutil

import pytest

from opd_ray.config.errors import ConfigError
from opd_ray.data.rows import DataError
from opd_ray.models.contract import ContractError
from opd_ray.models.loading import load_tokenizer
from opd_ray.run.preflight import build_task, check_pair, load_config
from tests.conftest import LAB, ROOT

SUMS = ROOT / "tests" / "data" / "sums"


def dataset_cfg(models, *overrides):
    return load_config(ROOT / "configs" / "lab_cpu.yaml", [
        f"model.student={models / 'student'}", f"model.teacher={models / 'teacher'}", "data.task=dataset",
        f"data.train_files=[{SUMS / 'train.jsonl'}]",
        f"data.eval_files={{easy: {SUMS / 'easy.jsonl'}, hard: [{SUMS / 'hard.jsonl'}]}}",
        "data.max_prompt_tokens=96", *overrides])


def test_prompts_render_through_the_chat_template_and_overlong_ones_are_dropped(tiny_smol):
    cfg = dataset_cfg(tiny_smol, "data.chat_template_kwargs={enable_thinking: false}")
    tok = load_tokenizer(cfg.model.student)
    task = build_task(cfg, tok)
    rows = [json.loads(line) for line in (SUMS / "train.jsonl").read_text().splitlines()]
    fitting = [r for r in rows if not r["prompt"].startswith("Read carefully.")]
    assert len(task.train) == len(fitting) == len(rows) - 3
    assert task.notes == ["data.train_files: 3 prompts longer than data.max_prompt_tokens=96 dropped"]
    for example, row in zip(task.train, fitting):
        messages = [{"role": "user", "content": row["prompt"]}]
        want = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        assert list(example.prompt_ids) == list(want) and example.answer == row["answer"]
        assert example.prompt.startswith("<|im_start|>system\n") and example.prompt.endswith("<|im_start|>assistant\n")
    hard = [json.loads(line) for line in (SUMS / "hard.jsonl").read_text().splitlines()]  # chat `messages` rows
    assert [list(e.prompt_ids) for e in task.eval_sets["hard"]] == [
        tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False) for r in hard]
    assert list(task.eval_sets) == ["easy", "hard"] and task.primary == "easy" and task.verifier == "math"


def test_system_prompt_and_raw_text(tiny_smol):
    tok = load_tokenizer(str(tiny_smol / "student"))
    chat = build_task(dataset_cfg(tiny_smol, "data.system_prompt='Be brief.'"), tok)
    assert chat.train[0].prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is")
    raw = build_task(dataset_cfg(tiny_smol, "data.chat_template=none", "data.system_prompt='Be brief.'"), tok)
    assert raw.train[0].prompt.startswith("Be brief.\n\nWhat is") and "<|im_start|>" not in raw.train[0].prompt
    assert list(raw.train[0].prompt_ids) == tok(raw.train[0].prompt)["input_ids"]


def test_evaluation_rows_are_removed_from_the_training_set(tiny_smol, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text((SUMS / "train.jsonl").read_text() + (SUMS / "easy.jsonl").read_text())
    task = build_task(dataset_cfg(tiny_smol, f"data.train_files={train}"), load_tokenizer(str(tiny_smol / "student")))
    assert len(task.train) == 48 and "8 prompts that are also evaluation prompts removed" in task.notes[-1]


def test_every_prompt_too_long_is_an_error(tiny_smol):
    with pytest.raises(DataError, match=r"^data.eval_files.easy: all 8 prompts are longer than "
                                        r"data.max_prompt_tokens=10 tokens"):
        build_task(dataset_cfg(tiny_smol, "data.max_prompt_tokens=10"), load_tokenizer(str(tiny_smol / "student")))


@pytest.mark.parametrize("content, message", [
    ("", r"train.jsonl: .*(empty|no rows)"),
    ('{"prompt": "What is 1 + 1?", "answer": "2"}\n{"prompt": "x", "answer": \n', r"train.jsonl line 2: invalid JSON"),
    ('{"question": "What is 1 + 1?", "answer": "2"}\n', r"train.jsonl line 1: .*'prompt'"),
    ('{"prompt": 17, "answer": "2"}\n', r"train.jsonl line 1: .*prompt"),
    (b'{"prompt": "What is \xff?", "answer": "2"}\n', r"train.jsonl line 1: .*UTF-8"),
])
def test_bad_rows_name_the_file_and_line(tiny_smol, tmp_path, content, message):
    train = tmp_path / "train.jsonl"
    train.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError, match=message) as err:
        build_task(dataset_cfg(tiny_smol, f"data.train_files={train}"), load_tokenizer(str(tiny_smol / "student")))
    assert "\n" not in str(err.value) and str(err.value).startswith("data.train_files: ")


def test_config_errors_for_the_dataset_task(tiny_smol):
    with pytest.raises(ConfigError, match="^data.eval_files: task 'dataset' needs at least one evaluation set"):
        load_config(ROOT / "configs" / "lab_cpu.yaml", ["data.task=dataset", f"data.train_files={SUMS / 'train.jsonl'}"])
    with pytest.raises(ConfigError, match="^data.verifier: "):
        dataset_cfg(tiny_smol, "data.verifier=no_such_module:grade")
    with pytest.raises(ConfigError, match="^data.task: must be one of"):
        dataset_cfg(tiny_smol, "data.task=gsm8k")


def test_a_hub_model_offline_is_one_immediate_line(monkeypatch, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"^model.teacher: 'Qwen/Qwen3-4B' is neither a local folder nor in the "
                                          r"Hugging Face cache \(HF_HUB_OFFLINE=1 is set"):
        load_config(ROOT / "configs" / "lab_cpu.yaml", ["model.teacher=Qwen/Qwen3-4B"])
    assert no_network == []  # immediate: the offline hub is never asked


@pytest.mark.parametrize("swap", [False, True])
def test_a_teacher_of_another_vocabulary_is_refused_from_the_tokenizers(tiny_smol, no_weights, swap):
    """The lab student with a SmolLM2-vocabulary teacher, and the reverse: refused before any actor exists, from
    tokenizers and config files alone (no weights are loaded: that is what keeps it quick)."""
    roles = [str(LAB / "student"), str(tiny_smol / "teacher")]
    student, teacher = roles[::-1] if swap else roles
    cfg = load_config(ROOT / "configs" / "lab_cpu.yaml", [f"model.student={student}", f"model.teacher={teacher}",
                                                          "rollout.max_new_tokens=8"])
    with pytest.raises(ContractError, match=r"^model.teacher: the teacher does not fit the student \(vocabulary: "
                                            r".*ids mean different tokens") as err:
        check_pair(cfg)
    assert no_weights == [] and "\n" not in str(err.value)
    assert "special_token_ids" in str(err.value) and "chat_template: only the" in str(err.value)


def test_a_pair_that_shares_the_vocabulary_passes_and_corrupt_weights_are_named(tiny_smol, tmp_path):
    cfg = dataset_cfg(tiny_smol)
    check_pair(cfg)  # same tokenizer: passes
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_smol / "teacher", teacher)
    weights = teacher / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a download cut half-way
    with pytest.raises(ConfigError, match=r"^model.teacher: .*model.safetensors is corrupt: truncated"):
        check_pair(dataset_cfg(tiny_smol, f"model.teacher={teacher}"))
    (teacher / "model.safetensors").unlink()
    (teacher / "tokenizer.json").unlink()
    with pytest.raises(ConfigError, match=r"^model.teacher: .* has no tokenizer"):
        check_pair(dataset_cfg(tiny_smol, f"model.teacher={teacher}"))


def test_a_teacher_that_ends_responses_at_another_id_is_refused(tiny_smol, tmp_path, no_weights):
    """Same tokenizer, but the teacher's generation_config.json also ends a response at <|endoftext|> (id 0): the
    teacher would teach the student to stop at an id that does not stop the student's sampling."""
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_smol / "teacher", teacher)
    generation = teacher / "generation_config.json"
    config = json.loads(generation.read_text()) if generation.is_file() else {}
    generation.write_text(json.dumps({**config, "eos_token_id": [2, 0]}))
    with pytest.raises(ContractError, match=r"^model.teacher: the teacher does not fit the student \(end_of_response: "
                                            r"student ends at \[2 '<\|im_end\|>'\], teacher at \[0 "
                                            r"'<\|endoftext\|>', 2 '<\|im_end\|>'\]") as err:
        check_pair(dataset_cfg(tiny_smol, f"model.teacher={teacher}"))
    assert no_weights == [] and "\n" not in str(err.value)
    generation.write_text(json.dumps({**config, "eos_token_id": 2}))  # the same ids, written as one int: passes
    check_pair(dataset_cfg(tiny_smol, f"model.teacher={teacher}"))


def test_cold_start_prompts_come_from_the_training_rows_and_opd_skips_them(tiny_smol):
    from opd_ray.run.cold_start import opd_examples

    cfg = dataset_cfg(tiny_smol, "stages=[cold_start,opd]", "cold_start.prompts=10")
    task = build_task(cfg, load_tokenizer(cfg.model.student))
    opd = opd_examples(task, cfg)
    assert len(task.cold_start) == 10 and set(task.cold_start) <= set(task.train)
    assert len(opd) == len(task.train) - 10 and not set(opd) & set(task.cold_start)


def test_the_probe_runs_on_a_dataset_task(tiny_smol):
    from opd_ray.run.probe import VERDICTS, ProbeSettings, run_probe

    cfg = dataset_cfg(tiny_smol, "rollout.max_new_tokens=6", "objective.k=16")
    report = run_probe(cfg, ProbeSettings(n_prompts=4, depths=[0.0]))
    assert report.verdict in VERDICTS and report.n_prompts == 4 and report.k == 16
    shared = ("vocabulary", "special_token_ids", "end_of_response", "chat_template", "embedding_tables",
              "prompt_round_trip")
    assert all(report.contract[name]["pass"] for name in shared), report.contract
    assert report.contract["self_test"]["pass"], report.contract["self_test"]  # the student scored by itself


def test_a_wider_teacher_table_passes_and_both_sides_use_the_shared_ids(tiny_smol, tmp_path):
    """Real pairs differ in table width (151,936 vs 152,064 rows in the DeepSeek-R1-Distill family)."""
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from opd_ray.engines.hf_rollout import HFRollout
    from opd_ray.engines.hf_teacher import HFTeacher
    from opd_ray.models.folders import shared_logit_width

    wide = tmp_path / "teacher"
    model = AutoModelForCausalLM.from_pretrained(tiny_smol / "teacher")
    model.resize_token_embeddings(49152 + 128)  # padding rows, as the 7B checkpoints have
    model.save_pretrained(wide)
    AutoTokenizer.from_pretrained(tiny_smol / "teacher").save_pretrained(wide)
    cfg = dataset_cfg(tiny_smol, f"model.teacher={wide}", "objective.k=16")
    check_pair(cfg)
    width = shared_logit_width(cfg.model.student, cfg.model.teacher)
    assert width == 49152
    task = build_task(cfg, load_tokenizer(cfg.model.student))
    rollout = HFRollout(cfg.model.student, max_new_tokens=4, temperature=1.0, top_k=16, run_seed=0, vocab_limit=width)
    batch = rollout.generate([list(ex.prompt_ids) for ex in task.train[:2]], [(0, 0, 0), (0, 1, 0)], 0)
    scored = HFTeacher(str(wide), top_k=16, temperature=1.0, max_new_tokens=4, vocab_limit=width).score(batch)
    assert scored.teacher_topk_ids_BRK.max() < width
    # log-probs over the shared ids are normalised: the teacher's top-16 mass is at most 1
    assert (np.exp(scored.teacher_topk_logp_BRK.astype(np.float64)).sum(-1) <= 1 + 1e-3).all()


def test_a_model_folder_without_weights_is_named(tiny_smol, tmp_path):
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_smol / "teacher", teacher)
    (teacher / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"^model.teacher: .* has no weights \(no \*.safetensors or "):
        check_pair(dataset_cfg(tiny_smol, f"model.teacher={teacher}"))
