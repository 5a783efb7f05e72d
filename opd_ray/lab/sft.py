"""Supervised fine-tuning of the lab models on reference chains of thought (single process, plain torch).

The lab builder uses this to make the student and the teacher; it is deliberately small. OPD itself runs in
the DeepSpeed learner group (opd_ray/learner/deepspeed_rank.py).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from tqdm import tqdm

from opd_ray.lab.task import Problem, sample_problems, verify
from opd_ray.models.sampling import decode_responses, sample

# A mixture entry is (weight, n_terms range) for the sum skill, or (weight, n_terms range, skill) (task.SKILLS)
SKILL_SEED_OFFSET = {"sum": 0, "digits": 500_000}


def encode_example(tokenizer, problem: Problem, cot: str = "forward") -> tuple[list[int], int]:
    """Token ids of <bos> prompt response <eos>, and the length of the prompt part (masked from the loss)."""
    prompt_ids = tokenizer(problem.prompt)["input_ids"]
    response = problem.solution_in(cot)
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt_ids + response_ids, len(prompt_ids)


def make_batch(tokenizer, problems: list[Problem],
               cot: str = "forward") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return pad_batch([encode_example(tokenizer, p, cot) for p in problems], tokenizer.pad_token_id)


def pad_batch(encoded: list[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (ids, attention mask, labels) of [(token ids, prompt length)]; prompts and padding are -100."""
    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, (seq, n_prompt) in enumerate(encoded):
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, n_prompt: len(seq)] = torch.tensor(seq[n_prompt:])
    return ids, mask, labels


def accuracy(model, tokenizer, problems: list[Problem], max_new_tokens: int = 64, batch: int = 128) -> float:
    """Greedy-decoding accuracy judged by the task's verifier."""
    model.eval()
    correct = 0
    for start in range(0, len(problems), batch):
        chunk = problems[start: start + batch]
        prompts = [tokenizer(p.prompt)["input_ids"] for p in chunk]
        out = sample(model, prompts, max_new_tokens=max_new_tokens, eos_id=tokenizer.eos_token_id,
                     pad_id=tokenizer.pad_token_id, seeds=None)
        correct += sum(verify(p.prompt, r) for p, r in zip(chunk, decode_responses(tokenizer, out)))
    model.train()
    return correct / len(problems)


def sft_batch_problems(mixture, weights: torch.Tensor, gen: torch.Generator, step: int, batch_size: int,
                       seed: int) -> list[Problem]:
    """The problems of SFT step `step`: the mixture component of each row drawn from `gen`, then seeded draws."""
    counts = torch.bincount(torch.multinomial(weights, batch_size, True, generator=gen), minlength=len(mixture))
    problems = []
    for (_, n_range, *skill), count in zip(mixture, counts.tolist()):
        skill = skill[0] if skill else "sum"
        offset = SKILL_SEED_OFFSET[skill]  # two skills over one n_terms range draw different terms
        problems += sample_problems(seed * 1_000_003 + step * 31 + n_range[0] + offset, count, n_range, skill)
    return problems


def sft_problems(mixture: list[tuple], *, steps: int, batch_size: int, seed: int
                 ) -> list[Problem]:
    """Every problem `train_sft` trains on with these arguments, in order: a model's post-training data."""
    gen = torch.Generator().manual_seed(seed)
    weights = torch.tensor([entry[0] for entry in mixture])
    return [p for step in range(steps) for p in sft_batch_problems(mixture, weights, gen, step, batch_size, seed)]


def train_sft(model, tokenizer, mixture: list[tuple], *, steps: int, batch_size: int,
              lr: float, seed: int, desc: str, cot: str = "forward", stop_at: int | None = None) -> list[float]:
    """Train on problems drawn from `mixture` = [(weight, n_terms_range[, skill]), ...] with chains of thought in the
    `cot` format (task.COT_FORMATS); returns the loss curve."""
    gen = torch.Generator().manual_seed(seed)
    weights = torch.tensor([entry[0] for entry in mixture])
    return sft_loop(model, lambda step: make_batch(
        tokenizer, sft_batch_problems(mixture, weights, gen, step, batch_size, seed), cot), steps=steps, lr=lr,
        desc=desc, stop_at=stop_at)


def sft_loop(model, batch_at, *, steps: int, lr: float, desc: str, log_every: int = 100,
             weight_decay: float = 0.01, stop_at: int | None = None,
             after_step: Callable[[int], None] | None = None) -> list[float]:
    """AdamW with a 5% linear warm-up and a cosine decay over `steps` batches `batch_at(step)` = (ids, mask,
    labels); gradients clipped at 1. `stop_at`: stop after that many steps of the same schedule (an under-trained
    model). `after_step(steps done)` runs after each step, the model in eval mode (a plateau check scores it there).
    Returns the loss curve."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    losses, t0 = [], time.time()
    for step in (bar := tqdm(range(stop_at or steps), desc=desc, mininterval=5)):
        ids, mask, labels = batch_at(step)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % log_every == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", s=f"{time.time() - t0:.0f}")
        if after_step is not None:
            model.eval()
            after_step(step + 1)
            model.train()
    model.eval()
    return losses
