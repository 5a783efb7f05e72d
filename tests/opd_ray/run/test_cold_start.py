"""The cold-start stage's data path without Ray: disjoint prompt sets, truncation, filtering with retries."""
import numpy as np
import pytest

from opd_ray.lab import build as lab_build
from opd_ray.lab.arith_task import example
from opd_ray.lab.task import parse_prompt
from opd_ray.lab.tokenizer import build_tokenizer
from opd_ray.run import cold_start
from opd_ray.run.preflight import build_task, load_config
from opd_ray.trajectory.batch import TrajectoryBatch
from tests.conftest import ROOT

CONFIG = ROOT / "configs" / "lab_cpu.yaml"


def opd_and_sft_prompts(cfg) -> tuple[list[str], list[str]]:
    task = build_task(cfg, build_tokenizer())
    return [ex.prompt for ex in task.cold_start], [ex.prompt for ex in cold_start.opd_examples(task, cfg)]


def test_opd_prompts_are_disjoint_from_the_sft_prompts_and_the_eval_sets():
    cfg = load_config(CONFIG, ["stages=[cold_start,opd]", "cold_start.prompts=3000", "data.train_prompts=3000",
                               "cold_start.n_terms=[4,5]"])
    sft, opd = opd_and_sft_prompts(cfg)
    plain = load_config(CONFIG, ["data.train_prompts=3000"])
    assert len(sft) > 2900 and not set(sft) & set(opd)
    assert len(opd) < len(opd_and_sft_prompts(plain)[1])  # some overlapping draws were removed
    held_out = {p.prompt for s in lab_build.eval_sets() for p in s}
    assert not held_out & set(sft) and not held_out & set(opd)
    templated = load_config(CONFIG, ["stages=[cold_start,opd]", "data.prompt_template='#{q}'"])
    assert all(p.startswith("#") and parse_prompt(p) for p in opd_and_sft_prompts(templated)[1][:50])


def batch_of(tokenizer, prompts, responses, max_len=20):
    """A rollout-engine-shaped batch; responses longer than max_len are cut without <eos> (truncated)."""
    rows = [tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for r in responses]
    rows = [r[:max_len] for r in rows]
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), np.int32)
    mask = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, True
    p_ids = [tokenizer(p)["input_ids"] for p in prompts]
    p_width = max(len(p) for p in p_ids)
    prompt_ids = np.array([[0] * (p_width - len(p)) + p for p in p_ids], np.int32)
    n = len(rows)
    return TrajectoryBatch(traj_ids=[(0, i, 0) for i in range(n)], policy_version=0, prompt_ids_BP=prompt_ids,
                           prompt_mask_BP=prompt_ids != 0, response_ids_BR=ids, response_mask_BR=mask,
                           student_logp_BR=np.zeros((n, width), np.float32),
                           student_topk_ids_BRK=np.zeros((n, width, 4), np.int32),
                           student_topk_logp_BRK=np.zeros((n, width, 4), np.float32))


class FakeTeacherEngine:
    """Answers by attempt: prompt 1 first repeats itself, prompt 2 first runs past the token limit."""

    def __init__(self, tokenizer, answers):
        self.tokenizer, self.answers, self.calls = tokenizer, answers, []
        self.generate = self  # engine.generate.remote(...) as on an actor

    def remote(self, prompt_ids, traj_ids, version, answers=None):
        self.calls.append([t[1] for t in traj_ids])
        prompts = [self.tokenizer.decode(p, skip_special_tokens=True) for p in prompt_ids]
        texts = [self.answers[t[1]][min(t[0], len(self.answers[t[1]]) - 1)] for t in traj_ids]
        batch = batch_of(self.tokenizer, prompts, texts)
        batch.traj_ids = list(traj_ids)
        return batch


def test_generate_filtered_retries_rejected_prompts(monkeypatch):
    monkeypatch.setattr(cold_start, "get", lambda ref, *_: ref)  # the fake engine answers directly
    tok = build_tokenizer()
    cfg = load_config(CONFIG, ["stages=[cold_start,opd]", "cold_start.retries=1"])
    prompts = [example(p, tok) for p in ("12+34:", "11+22:", "10+10:", "20+30:")]
    answers = {0: ["12+34=46;#46"], 1: ["1+1=2;1+1=2;#2", "11+22=33;#33"], 2: ["10+10=20;10+10=20;10+10=20;#20"],
               3: ["20+30=50;"]}
    engine = FakeTeacherEngine(tok, answers)
    data, stats = cold_start.generate_filtered(engine, prompts, tok, cfg)
    assert engine.calls == [[0, 1, 2, 3], [1, 2, 3]]  # only rejected prompts go again
    assert stats["kept"] == 2 and stats["dropped_after_retries"] == 2
    assert stats["rejections"] == {"repeated_line": 1, "truncated": 2, "answer_format": 2}
    kept = sorted(tok.decode(r[m].tolist(), skip_special_tokens=True)
                  for r, m in zip(data.response_ids_BR, data.response_mask_BR))
    assert kept == ["11+22=33;#33", "12+34=46;#46"]


def test_truncated_rows_are_those_without_eos():
    tok = build_tokenizer()
    batch = batch_of(tok, ["1+2:", "3+4:"], ["1+2=3;#3", "3+4=7;3+4=7;#7"], max_len=10)
    assert cold_start.truncated_rows(batch, tok.eos_token_id).tolist() == [False, True]


def test_all_rejected_is_an_error_that_names_the_filters(monkeypatch):
    monkeypatch.setattr(cold_start, "get", lambda ref, *_: ref)
    tok = build_tokenizer()
    cfg = load_config(CONFIG, ["stages=[cold_start,opd]", "cold_start.retries=0"])
    engine = FakeTeacherEngine(tok, {0: ["12+34=46;"]})
    with pytest.raises(RuntimeError, match="cold_start.filters='lab'"):
        cold_start.generate_filtered(engine, [example("12+34:", tok)], tok, cfg)


def test_resume_compares_against_the_stage_export(tmp_path):
    cfg = load_config(CONFIG, ["stages=[cold_start,opd]"])
    assert cold_start.resumed_config(cfg, tmp_path) is cfg  # no stage output yet
    (tmp_path / "cold_start" / "hf").mkdir(parents=True)
    assert cold_start.resumed_config(cfg, tmp_path).model.student == str(tmp_path / "cold_start" / "hf")
    plain = load_config(CONFIG)
    assert cold_start.resumed_config(plain, tmp_path) is plain
