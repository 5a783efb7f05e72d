"""NaN or +inf in a teacher's log-probs at a valid position is reported, never masked or shipped
(docs/design.md invariant 7): the full tensor (HF teacher, vLLM at a small vocabulary) and a shipped payload
(the vLLM teacher's own top-k). Padding may hold anything; -inf (a floored log-prob) is a value, not an error."""
import numpy as np
import pytest
import torch

from opd_ray.engines.hf_teacher import check_finite, check_finite_fields

MASK_BR = np.array([[True, True, False], [True, False, False]])


def fields(**spoil):
    out = {"teacher_logp_BR": np.full((2, 3), -1.0, np.float16), "teacher_topk_ids_BRK": np.zeros((2, 3, 4), np.int32),
           "teacher_topk_logp_BRK": np.full((2, 3, 4), -2.0, np.float32), "teacher_entropy_BR": None}
    for name, (index, value) in spoil.items():
        out[name][index] = value
    return out


def test_a_payload_with_nan_or_inf_at_a_valid_position_is_refused():
    check_finite_fields(fields(), MASK_BR)
    check_finite_fields(fields(teacher_logp_BR=((0, 2), np.nan), teacher_topk_logp_BRK=((1, 1, 0), np.inf)), MASK_BR)
    check_finite_fields(fields(teacher_topk_logp_BRK=((0, 0, 3), -np.inf)), MASK_BR)  # floored, not broken
    with pytest.raises(FloatingPointError, match="teacher_logp_BR is NaN/inf at 1 valid positions"):
        check_finite_fields(fields(teacher_logp_BR=((1, 0), np.nan)), MASK_BR)
    with pytest.raises(FloatingPointError, match="teacher_topk_logp_BRK is NaN/inf at 1 valid positions"):
        check_finite_fields(fields(teacher_topk_logp_BRK=((0, 1, 2), np.inf)), MASK_BR)


def test_a_full_tensor_with_nan_at_a_valid_position_is_refused():
    logp_BRV = torch.log_softmax(torch.randn(2, 3, 5), -1)
    check_finite(logp_BRV, MASK_BR)
    logp_BRV[0, 2, 1] = float("nan")  # padding
    check_finite(logp_BRV, MASK_BR)
    logp_BRV[1, 0, 4] = float("nan")
    with pytest.raises(FloatingPointError, match="at 1 valid positions"):
        check_finite(logp_BRV, MASK_BR)
