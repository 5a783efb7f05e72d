"""The learner's kernel choices (docs/speed.md, "The learner's step"): eager attention (what a CPU run of short
sequences gets, `preflight.load_config`), and AdamW fused into one kernel. Both change how the numbers are computed,
not what they are: checked against the default attention and against a float64 AdamW on the same gradient."""
import numpy as np
import pytest
import torch

from opd_ray.config.schema import LearnerConfig
from tests.conftest import lab_learner, scored_lab_batch


@pytest.fixture(scope="module")
def scored():
    return scored_lab_batch(16, problem_seed=23)[1]


def loss_and_gradient(learner, batch) -> tuple[float, torch.Tensor]:
    loss, _ = learner.opd_loss(batch, float(batch.response_mask_BR.sum()))
    learner.engine.backward(loss)
    return float(loss.detach()), torch.cat([p.grad.reshape(-1) for p in learner.engine.module.parameters()])


def test_eager_attention_gives_the_default_attentions_loss_and_gradient(scored):
    config = LearnerConfig(lr=1e-3, zero_stage=0)  # ZeRO-0 leaves each gradient in its parameter's .grad
    eager = lab_learner(learner=config, model_options={"attn_implementation": "eager"})
    default = lab_learner(learner=config)
    assert eager.engine.module.config._attn_implementation == "eager"
    assert default.engine.module.config._attn_implementation == "sdpa"
    loss_e, grad_e = loss_and_gradient(eager, scored)
    loss_d, grad_d = loss_and_gradient(default, scored)
    assert loss_e == pytest.approx(loss_d, rel=1e-5)
    assert float((grad_e - grad_d).abs().max()) <= 1e-5 * float(grad_d.abs().max())


def test_fused_adamw_step_matches_a_float64_adamw(scored):
    lr, decay, (beta1, beta2), eps = 1e-3, 0.1, (0.9, 0.999), 1e-8  # torch's AdamW defaults for betas and eps
    learner = lab_learner(learner=LearnerConfig(lr=lr, weight_decay=decay, grad_clip=1e9, zero_stage=0))
    assert learner.engine.optimizer.defaults["fused"] is True
    params = list(learner.engine.module.parameters())
    before = [p.detach().double().clone() for p in params]
    loss, _ = learner.opd_loss(scored, float(scored.response_mask_BR.sum()))
    learner.engine.backward(loss)
    grads = [p.grad.detach().double().clone() for p in params]
    learner.engine.step()
    for p, w, g in zip(params, before, grads):  # the first step: bias-corrected moments are g and g^2
        m_hat = (1 - beta1) * g / (1 - beta1)
        v_hat = (1 - beta2) * g * g / (1 - beta2)
        expected = w * (1 - lr * decay) - lr * m_hat / (v_hat.sqrt() + eps)
        np.testing.assert_allclose(p.detach().double().numpy(), expected.numpy(), atol=2e-6, rtol=0)
    assert any(bool((p.detach().double() != w).any()) for p, w in zip(params, before))
