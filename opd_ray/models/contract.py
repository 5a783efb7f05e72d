"""The student/teacher contract OPD silently relies on: the teacher scores the student's token ids, so both
must mean the same thing by every id. Checked on the driver before any actor starts (`check_pair`), and by
`opd-ray probe` (which adds its own checks on rollouts).

- the same token -> id map over the ids both tokenizers have;
- the same special-token ids (bos, eos, pad, unk);
- the same ids ending a response (the tokenizer's EOS and the generation config's `eos_token_id`s): an id that
  ends the teacher's answers but not the student's would be taught as "stop here" and then sampled through;
- the same chat-template rendering of one probe conversation;
- both embedding tables at least as wide as their tokenizer (otherwise an id indexes past the table).
"""
from __future__ import annotations

from opd_ray.config.errors import ConfigError

SPECIAL_TOKENS = ("bos", "eos", "pad", "unk")
PROBE_CONVERSATION = [
    {"role": "system", "content": "You are a careful assistant."},
    {"role": "user", "content": "What is 12 + 34? Think step by step."},
    {"role": "assistant", "content": "12 + 34 = 46. The answer is 46."},
    {"role": "user", "content": "And 46 + 56?"},
]


class ContractError(ConfigError):
    """Student and teacher disagree on what a token id means; the message names what differs."""


def _check(ok: bool, detail: str) -> dict:
    return {"pass": bool(ok), "detail": detail}


def pair_checks(s_tok, t_tok, s_width: int, t_width: int, s_end: list[int], t_end: list[int]) -> dict[str, dict]:
    """The contract's checks; each is {"pass": bool, "detail": str}. `s_end`, `t_end`: the ids that end a
    response for each model (`models.loading.eos_token_ids`)."""
    return {
        "vocabulary": vocabulary_check(s_tok, t_tok),
        "special_token_ids": special_token_check(s_tok, t_tok),
        "end_of_response": end_of_response_check(s_tok, s_end, t_end),
        "chat_template": chat_template_check(s_tok, t_tok),
        "embedding_tables": _check(s_width >= len(s_tok) and t_width >= len(t_tok),
                                   f"student table {s_width} rows for {len(s_tok)} tokens, "
                                   f"teacher table {t_width} rows for {len(t_tok)} tokens"),
    }


def vocabulary_check(s_tok, t_tok) -> dict:
    shared = min(len(s_tok), len(t_tok))
    s_ids = {i: t for t, i in s_tok.get_vocab().items() if i < shared}
    t_ids = {i: t for t, i in t_tok.get_vocab().items() if i < shared}
    differ = sorted(i for i in set(s_ids) | set(t_ids) if s_ids.get(i) != t_ids.get(i))
    detail = f"{len(s_tok)} vs {len(t_tok)} tokens, {shared} shared ids"
    if differ:
        i = differ[0]
        detail += (f"; {len(differ)} ids mean different tokens (id {i}: {s_ids.get(i)!r} for the student, "
                   f"{t_ids.get(i)!r} for the teacher)")
    return _check(not differ, detail)


def special_token_check(s_tok, t_tok) -> dict:
    pairs = {name: (getattr(s_tok, f"{name}_token_id"), getattr(t_tok, f"{name}_token_id")) for name in SPECIAL_TOKENS}
    return _check(all(a == b for a, b in pairs.values()), ", ".join(f"{k} {a}/{b}" for k, (a, b) in pairs.items()))


def end_of_response_check(tok, s_end: list[int], t_end: list[int]) -> dict:
    """Both models end a response at the same ids, the only place where their generation stops (beyond the shared
    `rollout.stop` strings and `rollout.max_new_tokens`)."""
    def named(ids) -> str:
        return "[" + ", ".join(f"{i} {tok.convert_ids_to_tokens(i)!r}" for i in sorted(ids)) + "]"
    detail = f"student ends at {named(s_end)}, teacher at {named(t_end)}"
    if set(s_end) != set(t_end):
        detail += " (tokenizer EOS plus generation_config.json eos_token_id)"
    return _check(set(s_end) == set(t_end), detail)


def chat_template_check(s_tok, t_tok) -> dict:
    templates = [bool(getattr(tok, "chat_template", None)) for tok in (s_tok, t_tok)]
    if templates == [False, False]:
        return _check(True, "no chat template on either side (raw prompts)")
    if templates[0] != templates[1]:
        return _check(False, f"only the {'student' if templates[0] else 'teacher'} has a chat template")
    rendered = [tok.apply_chat_template(PROBE_CONVERSATION, tokenize=False, add_generation_prompt=True)
                for tok in (s_tok, t_tok)]
    if rendered[0] == rendered[1]:
        return _check(True, "both render the probe conversation identically")
    a, b = rendered
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return _check(False, f"the probe conversation renders differently from character {at}: "
                         f"{a[at:at + 30]!r} vs {b[at:at + 30]!r}")


def failed_summary(checks: dict[str, dict]) -> str:
    return "; ".join(f"{name}: {c['detail']}" for name, c in checks.items() if not c["pass"])

