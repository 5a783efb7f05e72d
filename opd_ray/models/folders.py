"""Model folders, checked on the driver before any actor starts: hub ids resolved to local snapshots, and the
files a folder needs (config, tokenizer, weights whose safetensors headers are intact).

Nothing here loads weights: a corrupt or missing file is named in one line instead of failing inside an actor.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import struct
from pathlib import Path

from opd_ray.config.errors import ConfigError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # org/name, as on the Hugging Face hub
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")


def resolve_model(name: str, field: str) -> str:
    """A local folder as is; a hub id through `huggingface_hub.snapshot_download`, once, on the driver.

    With HF_HUB_OFFLINE=1 only the local cache is consulted, so a missing model is an immediate error.
    """
    if Path(name).is_dir():
        return name
    if not HUB_ID.match(name):
        raise ConfigError(f"{field}: no model folder at {name!r} (nor a hub id of the form org/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return snapshot_download(name)
    except LocalEntryNotFoundError:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint = ("HF_HUB_OFFLINE=1 is set, so it is not downloaded: download it first (`hf download "
                f"{name}`) or unset HF_HUB_OFFLINE" if offline else "the hub could not be reached")
        if name.startswith("models/"):
            hint += "; `make real-models` builds the project's models/ folder"
        raise ConfigError(f"{field}: {name!r} is neither a local folder nor in the Hugging Face cache ({hint})") from None
    except (HfHubHTTPError, OSError, ValueError) as err:  # unknown repo, gated repo, no network
        raise ConfigError(f"{field}: cannot fetch {name!r} from the hub: {str(err).splitlines()[0]}") from None


def check_model_folder(path: str, field: str) -> None:
    """config.json, a tokenizer and weights are present, and every safetensors header is intact."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{field}: {path} is not a Hugging Face model folder (no config.json)")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(f"{field}: {path} has no tokenizer (none of {', '.join(TOKENIZER_FILES)})")
    weights = [f for pattern in WEIGHT_GLOBS for f in sorted(folder.glob(pattern))]
    if not weights:
        raise ConfigError(f"{field}: {path} has no weights (no *.safetensors or pytorch_model*.bin)")
    for file in weights:
        if file.suffix == ".safetensors":
            problem = safetensors_problem(file)
            if problem:
                raise ConfigError(f"{field}: {file} is corrupt: {problem}")


def safetensors_problem(file: Path) -> str | None:
    """What is wrong with a safetensors file's header, or None. Reads the header only (8 bytes + JSON)."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than a safetensors header"
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            return f"header length {n} exceeds the file's {size} bytes"
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            return f"header is not JSON ({err})"
    ends = [t["data_offsets"][1] for name, t in header.items() if name != "__metadata__" and isinstance(t, dict)
            and "data_offsets" in t]
    if not ends:
        return "header lists no tensors"
    if 8 + n + max(ends) > size:
        return f"truncated: the header needs {8 + n + max(ends)} bytes, the file has {size}"
    return None


def model_config(path: str) -> dict:
    """config.json of a model folder (for vision-language wrappers, its text_config)."""
    cfg = json.loads((Path(path) / "config.json").read_text())
    return cfg.get("text_config", cfg) if "vocab_size" not in cfg else cfg


def logit_width(path: str) -> int:
    return int(model_config(path)["vocab_size"])


def shared_logit_width(student: str, *teachers: str) -> int:
    """Student and teachers log-softmax over the ids every embedding table has. Widths differ in real pairs
    (DeepSeek-R1-Distill-Qwen-1.5B: 151,936; a 7B of the same family: 152,064) while the tokenizer (~151.7k)
    fits both; the ids above the smaller table are padding that no tokenizer emits."""
    return min(logit_width(path) for path in (student, *teachers))


def end_of_response_ids(path: str, tokenizer) -> list[int]:
    """Every id that ends a response, read from the folder (no weights loaded): the tokenizer's EOS and each
    `eos_token_id` of generation_config.json (Qwen lists two); `models.loading.eos_token_ids` on a loaded model."""
    file = Path(path) / "generation_config.json"
    return end_ids(tokenizer, json.loads(file.read_text()).get("eos_token_id") if file.is_file() else None)


def end_ids(tokenizer, configured: int | list[int] | None) -> list[int]:
    """The tokenizer's EOS and the generation config's `eos_token_id` (an id, a list, or None), sorted."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    ids.update([configured] if isinstance(configured, int) else (configured or []))
    return sorted(ids)


def weights_sha256(path: str) -> str:
    """SHA-256 over a model folder's weight files (names and bytes, in name order): what a teacher manifest
    records, so that a resume notices a teacher whose weights changed under the same path. Hashed once per
    process for files of the same size and modification time."""
    files = sorted({f for pattern in WEIGHT_GLOBS for f in Path(path).glob(pattern)})
    return _sha256_of_files(tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@functools.lru_cache(maxsize=16)
def _sha256_of_files(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in files:
        digest.update(Path(name).name.encode())
        with open(name, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()
