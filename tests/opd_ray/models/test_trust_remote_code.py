"""A checkpoint's own Python (`auto_map` in config.json) never runs unless model.trust_remote_code is set."""
import json
import shutil

import pytest

from opd_ray.models.loading import load_model, load_tokenizer
from opd_ray.run.preflight import load_config
from tests.conftest import LAB_CFG

# transformers imports a copy of this file from its modules cache, so the marker path is absolute.
MODELING = """
from pathlib import Path
Path({marker!r}).write_text("the checkpoint's code ran")
from transformers import LlamaForCausalLM as RemoteLlama  # noqa: E402,F401
"""


@pytest.fixture
def remote_code_model(tiny_lab, tmp_path):
    folder = tmp_path / "remote"
    shutil.copytree(tiny_lab / "student", folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_remote.RemoteLlama"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_remote.py").write_text(MODELING.format(marker=str(tmp_path / "RAN")))
    return folder


def test_remote_code_is_off_by_default_and_never_runs(remote_code_model, tiny_lab):
    cfg = load_config(LAB_CFG, [f"model.student={remote_code_model}", f"model.teacher={tiny_lab / 'teacher'}"])
    assert cfg.model.trust_remote_code is False
    try:
        load_model(cfg.model.student, cfg.model.trust_remote_code)
        load_tokenizer(cfg.model.student, cfg.model.trust_remote_code)
    except ValueError as err:  # transformers may refuse instead of falling back to the built-in class
        assert "trust_remote_code" in str(err)
    assert not (remote_code_model.parent / "RAN").exists()


def test_remote_code_runs_when_configured(remote_code_model):
    """The counterpart: the same folder does run its code with the flag on, so the test above is not vacuous."""
    load_model(str(remote_code_model), trust_remote_code=True)
    assert (remote_code_model.parent / "RAN").exists()
