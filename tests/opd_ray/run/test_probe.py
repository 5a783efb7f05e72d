"""The pre-flight probe: contract checks on crafted pairs, the JSON CLI, and the ranking of the lab's teachers."""
import json
import shutil

import pytest

from opd_ray.run.cli import main as cli_main
from opd_ray.run.preflight import load_config
from opd_ray.run.probe import EXIT_STATUS, VERDICTS, ProbeSettings, render, run_probe
from tests.conftest import LAB, ROOT

CONFIG = ROOT / "configs" / "lab_cpu.yaml"
FAST = ProbeSettings(n_prompts=16, depths=[0.0, 0.5])
SHORT = "rollout.max_new_tokens=16"  # untrained models never stop: keep their rollouts short


def probe(student, teacher, *overrides, settings=FAST):
    cfg = load_config(CONFIG, [f"model.student={student}", f"model.teacher={teacher}", *overrides])
    return run_probe(cfg, settings)


def test_teacher_as_its_own_student_has_nothing_to_teach(tiny_lab, capsys):
    """Same model on both sides: the contract holds, KL is 0, overlap is total, and there is no advantage."""
    code = cli_main(["probe", "--config", str(CONFIG), f"model.student={tiny_lab / 'student'}",
                     f"model.teacher={tiny_lab / 'student'}", SHORT, "--n-prompts", "16", "--depths", "0", "0.5",
                     "--prefix-check", "sum_chain", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] in VERDICTS and report["verdict"] == "no_new_capability"
    assert code == EXIT_STATUS["no_new_capability"] == 3  # `opd-ray probe ... && ray job submit ...` stops here
    assert all(c["pass"] for c in report["contract"].values())
    assert abs(report["metrics"]["reverse_kl"]) < 1e-4 and report["metrics"]["overlap_share_student"] > 0.99
    assert report["continuation"]["depth_0"] == 0.0
    # greedy continuations of its own prefixes are its own answers: no advantage at any depth, a flat decay
    decay = report["depth_decay"]
    assert decay["n"] == 16 and decay["slope"] == decay["slope_se"] == 0.0
    assert [row["advantage"] for row in decay["depths"].values()] == [0.0, 0.0]
    assert all(0 <= row["slipped_share"] <= 1 for row in decay["depths"].values())


def test_the_probe_runs_on_a_held_out_evaluation_set_and_names_a_missing_one(tiny_lab, capsys):
    pair = [f"model.student={tiny_lab / 'student'}", f"model.teacher={tiny_lab / 'teacher'}", SHORT]
    code = cli_main(["probe", "--config", str(CONFIG), *pair, "--eval-set", "nope"])
    assert code == 2 and capsys.readouterr().out.strip() == \
        "error: --eval-set: no evaluation set 'nope'; this run's are hard, easy"
    cfg = load_config(CONFIG, pair)
    report = run_probe(cfg, ProbeSettings(n_prompts=8, depths=[0.0, 0.5], eval_set="easy"))
    assert report.n_prompts == 8 and report.depth_decay["n"] == 8


def test_the_self_test_holds_in_bfloat16_at_its_own_tolerance():
    """model.dtype bfloat16 on the trained lab pair: the student scored by itself gives a sampled KL of ~0. With
    sdpa attention its rounding (max |Δlog p| 0.04-0.06, docs/speed.md) passes bfloat16's tolerance but not
    float32's; with eager attention (what a CPU run of short sequences resolves to) the sampler's decode steps and
    the scoring pass computed the same values here (max |Δlog p| 0), so it passes float32's too."""
    student, teacher = LAB / "student", LAB / "teacher"
    report = probe(student, teacher, "model.dtype=bfloat16")
    assert report.contract["self_test"]["pass"], report.contract["self_test"]
    strict = ProbeSettings(n_prompts=16, depths=[0.0], self_test_tol=1e-3)
    sdpa = probe(student, teacher, "model.dtype=bfloat16", "model.attn_implementation=sdpa", settings=strict)
    assert not sdpa.contract["self_test"]["pass"]  # bf16 really ran: its rounding is above float32's tolerance
    assert probe(student, teacher, "model.dtype=bfloat16", "model.attn_implementation=eager",
                 settings=strict).contract["self_test"]["pass"]
    assert probe(student, teacher, settings=ProbeSettings(n_prompts=16, depths=[0.0], self_test_tol=1e-3)
                 ).contract["self_test"]["pass"]  # float32 at float32's tolerance


def test_a_different_vocabulary_is_a_contract_violation(tiny_lab, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_lab / "teacher", teacher)
    tok_file = teacher / "tokenizer.json"
    spec = json.loads(tok_file.read_text())
    vocab = spec["model"]["vocab"]
    vocab["0"], vocab["1"] = vocab["1"], vocab["0"]  # same size, same specials, digits swapped
    tok_file.write_text(json.dumps(spec))
    report = probe(tiny_lab / "student", teacher, SHORT)
    assert report.verdict == "contract_violation"
    assert not report.contract["vocabulary"]["pass"] and not report.contract["prompt_round_trip"]["pass"]
    assert report.contract["special_token_ids"]["pass"]
    # the models were never compared: conditions (i) and (ii) are skipped, not printed as nan
    assert report.conditions["thinking_pattern"]["pass"] is None and report.conditions["new_capability"]["pass"] is None
    text = render(report)
    assert "SKIP  (i)" in text and "SKIP  (ii)" in text and "nan" not in text, text
    code = cli_main(["probe", "--config", str(CONFIG), f"model.student={tiny_lab / 'student'}",
                     f"model.teacher={teacher}", SHORT])
    assert code == EXIT_STATUS["contract_violation"] == 5 and "verdict: contract_violation" in capsys.readouterr().out


def test_a_temperature_mismatch_is_a_contract_violation(tiny_lab):
    report = probe(tiny_lab / "student", tiny_lab / "teacher", SHORT, "teacher.temperature=2.0")
    assert report.verdict == "contract_violation"
    assert not report.contract["temperature"]["pass"] and report.contract["self_test"]["pass"]


@pytest.mark.skipif(not (LAB / "teacher_samedata").is_dir() or not (LAB / "teacher_incompatible").is_dir(),
                    reason="lab teachers not built (make lab)")
def test_probe_verdicts_on_the_lab_pairs_match_their_opd_outcomes():
    """docs/recipes.md measured OPD with each pair: teacher +53 points, teacher_samedata +43 (it fixes the
    student's copying errors though it solves few more problems alone), teacher_incompatible -44 (a different
    chain-of-thought order), and the reverse pair (the capable model taught by teacher_samedata) regresses."""
    settings = ProbeSettings(n_prompts=64, depths=[0.0])  # the verdict uses depth 0; deeper depths cost time
    pairs = {"teacher": ("student", "teacher"), "teacher_samedata": ("student", "teacher_samedata"),
             "teacher_incompatible": ("student", "teacher_incompatible"),
             "reverse": ("teacher", "teacher_samedata")}
    reports = {name: probe(LAB / s, LAB / t, settings=settings) for name, (s, t) in pairs.items()}
    verdicts = {name: r.verdict for name, r in reports.items()}
    assert verdicts == {"teacher": "ok", "teacher_samedata": "ok", "teacher_incompatible": "pattern_mismatch",
                        "reverse": "no_new_capability"}
    good, same, incompatible = (reports[n] for n in ("teacher", "teacher_samedata", "teacher_incompatible"))
    assert good.metrics["reverse_kl"] < incompatible.metrics["reverse_kl"]
    assert good.metrics["top1_agreement"] > incompatible.metrics["top1_agreement"]
    # the same-data teacher passes condition (ii) only locally: the global measure alone would have flagged it
    assert same.continuation["depth_0"] < settings.min_advantage <= good.continuation["depth_0"]
    assert same.metrics["first_disagreement_advantage"] >= settings.min_local_advantage
    assert [r.conditions["new_capability"]["shown_by"] for r in (good, same, reports["reverse"])] == [
        "global+local", "local", "neither"]
    assert "locally only" in render(same) and "locally only" not in render(good)
    assert reports["reverse"].continuation["depth_0"] < 0 and reports["reverse"].metrics[
        "first_disagreement_advantage"] < settings.min_local_advantage


def test_the_probe_gives_a_verdict_per_teacher_on_that_teachers_own_rows(capsys):
    """configs/lab_mopd.yaml: each specialist probed against the two-skill student on the rows routed to it passes;
    the sum teacher put in the digits teacher's place (it never saw a digits prompt) does not, and the exit status
    is the worst teacher's."""
    base = ["probe", "--config", str(ROOT / "configs" / "lab_mopd.yaml"), "--n-prompts", "32", "--depths", "0",
            "--json"]
    code = cli_main(base)
    reports = json.loads(capsys.readouterr().out)
    assert {name: r["verdict"] for name, r in reports.items()} == {"sum": "ok", "digits": "ok"} and code == 0
    assert reports["sum"]["n_prompts"] == reports["digits"]["n_prompts"] == 32
    code = cli_main(base + [f"teachers.digits.model={LAB / 'teacher'}"])
    reports = json.loads(capsys.readouterr().out)
    assert reports["sum"]["verdict"] == "ok" and reports["digits"]["verdict"] != "ok"
    assert code == max(EXIT_STATUS[r["verdict"]] for r in reports.values()) > 0
