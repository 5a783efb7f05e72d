"""bfloat16 mixed precision in the learner (`model.dtype: bfloat16`): float32 master weights, bfloat16 matmuls.

On the trained lab student and teacher, one batch of 16 scored trajectories: the bfloat16 loss and gradient agree
with float32's within the tolerances below (measured on an AVX2 CPU, 2026-12-07: loss 3.3e-3 relative, gradient
cosine 0.9945, gradient norm 2.8e-2 relative, first Adam update cosine 0.956), yet differ from them (autocast is on), and a bfloat16 step keeps the
parameters float32 and moves them as the float32 step does.
"""
import numpy as np
import pytest
import torch

from tests.conftest import lab_learner, scored_lab_batch

LOSS_RTOL = 0.02  # bfloat16 keeps 8 bits of mantissa: ~0.4% per rounding, averaged over thousands of tokens
GRAD_COSINE = 0.99
GRAD_NORM_RTOL = 0.05


@pytest.fixture(scope="module")
def scored():
    return scored_lab_batch(16, problem_seed=21)[1]


def make_learner(dtype: str, zero_stage: int = 1):
    from opd_ray.config.schema import LearnerConfig

    return lab_learner(learner=LearnerConfig(lr=1e-3, zero_stage=zero_stage), model_options={"dtype": dtype})


def loss_and_gradient(learner, batch) -> tuple[float, torch.Tensor]:
    """The learner's own loss on the batch, and its gradient as one flat float32 vector (the engine's backward,
    no optimizer step)."""
    loss, _ = learner.opd_loss(batch, float(batch.response_mask_BR.sum()))
    learner.engine.backward(loss)
    grads = [p.grad for p in learner.engine.module.parameters() if p.requires_grad]
    assert all(g is not None and g.dtype == torch.float32 for g in grads)  # gradients of the float32 master weights
    return float(loss), torch.cat([g.reshape(-1) for g in grads])


def test_bf16_loss_and_gradient_agree_with_float32(scored):
    # ZeRO-0 leaves each gradient in its parameter's .grad (ZeRO-1/2 move them into flat reduction buckets)
    fp32, bf16 = make_learner("float32", zero_stage=0), make_learner("bfloat16", zero_stage=0)
    assert all(p.dtype == torch.float32 for p in bf16.engine.module.parameters())  # the master weights
    loss32, grad32 = loss_and_gradient(fp32, scored)
    loss16, grad16 = loss_and_gradient(bf16, scored)
    assert loss16 != loss32  # autocast ran the matmuls in bfloat16: the comparison is not of one computation
    assert abs(loss16 - loss32) <= LOSS_RTOL * abs(loss32), (loss16, loss32)
    cosine = float(grad16 @ grad32 / (grad16.norm() * grad32.norm()))
    assert cosine >= GRAD_COSINE, cosine
    assert abs(float(grad16.norm() / grad32.norm()) - 1) <= GRAD_NORM_RTOL
    print(f"loss rel {abs(loss16 - loss32) / abs(loss32):.2e}, cosine {cosine:.6f}, "
          f"norm rel {abs(float(grad16.norm() / grad32.norm()) - 1):.2e}")


def test_a_bf16_step_keeps_float32_weights_and_moves_them_like_float32(scored):
    moved = {}
    for dtype in ("float32", "bfloat16"):
        learner = make_learner(dtype)
        before = {k: v.copy() for k, v in learner.full_state_dict().items()}
        learner.train_step([scored])
        after = learner.full_state_dict()
        assert all(v.dtype == np.float32 for v in after.values())
        moved[dtype] = np.concatenate([(after[k] - before[k]).ravel() for k in before])
    a, b = moved["float32"], moved["bfloat16"]
    assert np.linalg.norm(b) > 0
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert cosine >= 0.9, cosine  # measured 0.956. Adam's first step is sign-like: where a gradient is ~0, bf16 may flip it
    print(f"update cosine {cosine:.4f}")
