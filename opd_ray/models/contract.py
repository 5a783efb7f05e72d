"""The student/teacher contract OPD silently relies on: the teacher scores the student's token ids, so both
must mean the same thing by every id. Checked on the driver before any actor starts (`check_pair`), and by
`opd-ray probe` (which adds its own checks on rollouts).

- the same token -> id map over the ids both tokenizers have;
- the same special-token ids (bos, eos, pad, unk);
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


def pair_checks(s_tok, t_tok, s_width: int, t_width: int) -> dict[str, dict]:
    """The contract's checks; each is {"pass": bool, "detail": str}."""
    return {
        "vocabulary": vocabulary_check(s_tok, t_tok),
        "special_token_ids": special_token_check(s_tok, t_tok),
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

