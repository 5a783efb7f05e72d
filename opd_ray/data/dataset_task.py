"""The `dataset` task: the user's prompt files, rendered through the student's chat template.

    data.train_files: [data/train.jsonl]            # the OPD prompts
    data.eval_files: {aime: data/aime.jsonl, ...}   # held-out sets, reported side by side
    data.prompt_key / data.answer_key               # a string or a chat `messages` list; the reference answer

Rendering: the prompt (a string becomes one user message, through `data.prompt_template`) gets
`data.system_prompt` as a system message, then the tokenizer's chat template with `add_generation_prompt`
and `data.chat_template_kwargs` (`data.chat_template: none` sends the raw text instead). Prompts longer than
`data.max_prompt_tokens` are dropped and counted, and training rows whose rendered prompt is also an
evaluation prompt are removed (leakage). Rows are read by opd_ray/data/rows.py, which names the file and
line of a bad row.
"""
from __future__ import annotations

import random

from tqdm import tqdm

from opd_ray.config import teachers
from opd_ray.config.schema import OPDConfig
from opd_ray.data.rows import DataError, Row, load_rows_many, row_answer, row_prompt
from opd_ray.data.task import Example, Task

PROGRESS_ROWS = 2000  # show a progress bar when rendering more rows than this


class PromptRenderer:
    """A row's prompt -> (rendered text, token ids), exactly as the engines will see it."""

    def __init__(self, tokenizer, cfg: OPDConfig):
        d = cfg.data
        self.tokenizer, self.system_prompt, self.template = tokenizer, d.system_prompt, d.prompt_template
        self.use_chat = d.chat_template == "auto" and bool(getattr(tokenizer, "chat_template", None))
        self.kwargs = dict(d.chat_template_kwargs)

    def messages(self, prompt: str | list[dict]) -> list[dict]:
        messages = list(prompt) if isinstance(prompt, list) else [
            {"role": "user", "content": self.template.replace("{q}", prompt)}]
        if self.system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages

    def __call__(self, prompt: str | list[dict]) -> tuple[str, list[int]]:
        messages = self.messages(prompt)
        if self.use_chat:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                      **self.kwargs)
            ids = self.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                     return_dict=False, **self.kwargs)
            return text, list(ids)
        text = "\n\n".join(m["content"] for m in messages)  # no template: the contents, as plain text
        return text, self.tokenizer(text)["input_ids"]


class TeacherRouter:
    """The teacher of a training row: its `data.teacher_key` field, else its file's teacher ({files, teacher}),
    else `mopd.default_teacher`. Bound to the row here, before any actor starts, so that every re-issue, resume
    and restart scores the row's samples with the same teacher. A row that names an unknown teacher, or none
    when there is no default, is a one-line error naming its file and line."""

    def __init__(self, cfg: OPDConfig):
        self.key, self.known, self.default = cfg.data.teacher_key, teachers.names(cfg), teachers.default_teacher(cfg)

    def __call__(self, row: Row, field: str, file_teacher: str = "") -> str:
        named = row.data.get(self.key) if self.key else None
        if named is not None and not isinstance(named, str):
            raise DataError(f"{field}: {row.where}: {self.key!r} must be a teacher's name, got {named!r}")
        name = named or file_teacher or self.default
        if not name:
            raise DataError(f"{field}: {row.where}: names no teacher (data.teacher_key={self.key!r}) and "
                            f"mopd.default_teacher is not set; the teachers are {self.known}")
        if name not in self.known:
            raise DataError(f"{field}: {row.where}: teacher {name!r} is not one of the teachers {self.known}")
        return name


def render_rows(rows: list[Row], render: PromptRenderer, cfg: OPDConfig, field: str, prompt_key: str = "",
                answer_key: str = "", teacher_of=None) -> tuple[list[Example], int]:
    """Examples of the rows that fit `data.max_prompt_tokens`, and how many did not. `teacher_of(row)`: the
    teacher each training row is routed to."""
    d, examples, too_long = cfg.data, [], 0
    prompt_key, answer_key = prompt_key or d.prompt_key, answer_key or d.answer_key
    bar = tqdm(rows, desc=f"rendering {field}", unit="row", disable=len(rows) <= PROGRESS_ROWS)
    for row in bar:
        text, ids = render(row_prompt(row, prompt_key, field))
        answer = row_answer(row, answer_key, field)
        teacher = teacher_of(row) if teacher_of is not None else teachers.DEFAULT
        if len(ids) > d.max_prompt_tokens:
            too_long += 1
            continue
        examples.append(Example(text, tuple(ids), answer, teacher))
    if not examples:
        raise DataError(f"{field}: all {len(rows)} prompts are longer than data.max_prompt_tokens="
                        f"{d.max_prompt_tokens} tokens (rendered); raise it or shorten the prompts")
    return examples, too_long


def build(cfg: OPDConfig, tokenizer) -> Task:
    d, render, notes = cfg.data, PromptRenderer(tokenizer, cfg), []
    eval_sets = {}
    for name, source in d.eval_files.items():
        field = f"data.eval_files.{name}"
        eval_sets[name], dropped = render_rows(load_rows_many(source["files"], field), render, cfg, field,
                                               source["prompt_key"], source["answer_key"])
        if dropped:
            notes.append(f"{field}: {dropped} prompts longer than data.max_prompt_tokens={d.max_prompt_tokens} dropped")
    train, dropped = training_examples(cfg, render)
    if dropped:
        notes.append(f"data.train_files: {dropped} prompts longer than data.max_prompt_tokens={d.max_prompt_tokens} "
                     f"dropped")
    held_out = {ex.prompt for examples in eval_sets.values() for ex in examples}
    kept = [ex for ex in train if ex.prompt not in held_out]
    if len(kept) < len(train):
        notes.append(f"data.train_files: {len(train) - len(kept)} prompts that are also evaluation prompts removed")
    if not kept:
        raise DataError("data.train_files: every training prompt is also an evaluation prompt")
    cold = []
    if "cold_start" in cfg.stages:  # SFT prompts: a seeded sample of the training rows (OPD then skips them)
        cold = random.Random(cfg.run.seed).sample(kept, min(cfg.cold_start.prompts, len(kept)))
    return Task(name="dataset", train=kept, eval_sets=eval_sets, primary=next(iter(eval_sets)),
                verifier=d.verifier, cold_start=cold, notes=notes,
                eval_teachers={name: source["teacher"] for name, source in d.eval_files.items() if source["teacher"]})


def training_examples(cfg: OPDConfig, render: PromptRenderer) -> tuple[list[Example], int]:
    """The training rows of every `data.train_files` entry, each routed to its teacher; and how many were too long."""
    route, field, examples, dropped = TeacherRouter(cfg), "data.train_files", [], 0
    for source in cfg.data.train_files:
        files, file_teacher = (source["files"], source["teacher"]) if isinstance(source, dict) else (source, "")
        part, too_long = render_rows(load_rows_many(files, field), render, cfg, field,
                                     teacher_of=lambda row: route(row, field, file_teacher))
        examples += part
        dropped += too_long
    return examples, dropped
