"""Reading the user's prompt rows: JSONL, JSON, Parquet, `datasets` folders and hub datasets (no Ray here).

A *source* is one string from the config (`data.train_files`, `data.eval_files.<name>`). What it is decides
how it is read:

- an existing file ending in `.jsonl` (one JSON object per line; blank lines skipped), `.json` (a list of
  objects, or an object whose single value is that list, like `{"data": [...]}`) or `.parquet`;
- an existing folder written by `datasets.Dataset.save_to_disk`, or by `DatasetDict.save_to_disk`: then the
  split is required, written `folder:split`;
- otherwise a hub dataset id, loaded with `datasets.load_dataset`: `id` (split "train"), `id:split`
  (e.g. `openai/gsm8k:test`, slices too: `id:train[:100]`) or `id:config:split` (`openai/gsm8k:main:test`).
  A colon, because hub ids cannot contain one and `@` reads like a revision (`id@revision` in `hf://` paths).
  With HF_HUB_OFFLINE=1 an id that is not in the local cache fails at once.

Every row keeps `where` ("data/x.jsonl line 3", "data/x.parquet row 7", 1-based) so later errors can point
at it. Every mistake is a one-line `DataError` that starts with the config field and names the file and
line or row, e.g. `data.train_files: data/x.jsonl line 3: invalid JSON (Expecting ',' delimiter: column 12)`.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

FILE_SUFFIXES = (".jsonl", ".json", ".parquet")
# Suffixes that make a missing source read as a missing file rather than as a hub dataset id.
PATH_LIKE_SUFFIXES = FILE_SUFFIXES + (".csv", ".tsv", ".txt", ".arrow", ".yaml", ".yml", ".gz", ".zip")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
DEFAULT_SPLIT = "train"


class DataError(ValueError):
    """A user mistake in the data: the message is one line naming the config field, the file and the row."""


@dataclass(frozen=True)
class Row:
    """One prompt row as read, and where it came from (for error messages)."""
    data: dict
    where: str  # "data/x.jsonl line 3", "data/x.parquet row 7", "openai/gsm8k:test row 12"


def one_line(text: object) -> str:
    """The first line of an exception's text, whitespace collapsed: messages must stay one line."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return re.sub(r"\s+", " ", lines[0]) if lines else type(text).__name__


# ---------------------------------------------------------------------------------------------- sources


def load_rows_many(sources: Iterable[str] | str, field: str) -> list[Row]:
    """The rows of several sources, concatenated in order (a single string is one source)."""
    source_list = [sources] if isinstance(sources, str) else list(sources)
    if not source_list:
        raise DataError(f"{field}: no files given (a path, a hub dataset id, or a list of them)")
    rows: list[Row] = []
    for source in source_list:
        rows.extend(load_rows(source, field))
    return rows


def load_rows(source: str, field: str) -> list[Row]:
    """The rows of one source (a file, a `save_to_disk` folder or a hub id; see the module docstring)."""
    if not isinstance(source, str) or not source.strip():
        raise DataError(f"{field}: expected a file path or hub dataset id, got {source!r}")
    source = source.strip()
    path = Path(source).expanduser()
    if path.is_dir():
        return read_saved_dataset(path, source, None, field)
    if path.is_file():
        return read_file(path, source, field)
    folder, _, split = source.rpartition(":")
    if folder and split and Path(folder).expanduser().is_dir():
        return read_saved_dataset(Path(folder).expanduser(), folder, split, field)
    if looks_like_path(source):
        raise DataError(f"{field}: {source}: file not found")
    return read_hub_dataset(source, field)


def looks_like_path(source: str) -> bool:
    """True when a missing source was meant as a local path (so 'file not found' beats a hub lookup)."""
    if source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source:
        return True
    return source.lower().endswith(PATH_LIKE_SUFFIXES)


def read_file(path: Path, shown: str, field: str) -> list[Row]:
    """Dispatch an existing file on its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path, shown, field)
    if suffix == ".json":
        return read_json(path, shown, field)
    if suffix == ".parquet":
        return read_parquet(path, shown, field)
    raise DataError(f"{field}: {shown}: unknown file type {path.suffix or '(no suffix)'!r} "
                    f"(expected {', '.join(FILE_SUFFIXES)}, a datasets.save_to_disk folder or a hub dataset id)")


def read_bytes(path: Path, shown: str, field: str) -> bytes:
    """The file's bytes, a leading UTF-8 byte-order mark dropped; an unreadable or empty file is a DataError."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{field}: {shown}: cannot read ({err.strerror or one_line(err)})") from None
    data = data.removeprefix(b"\xef\xbb\xbf")  # editors on Windows write one; it is not part of the JSON
    if not data.strip():
        raise DataError(f"{field}: {shown}: file is empty")
    return data


def decode_utf8(data: bytes, shown: str, line_of_start: int, field: str) -> str:
    """`data` as text; invalid UTF-8 names the file and the line (a bare UnicodeDecodeError names nothing)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = line_of_start + data[:err.start].count(b"\n")
        column = err.start - data.rfind(b"\n", 0, err.start)  # 1-based; rfind gives -1 on the first line
        raise DataError(f"{field}: {shown} line {line}: invalid UTF-8 (byte 0x{data[err.start]:02x} at "
                        f"column {column}); save the file as UTF-8") from None


def json_error(err: json.JSONDecodeError) -> str:
    """`Expecting ',' delimiter: column 12`: the decoder's message without its redundant line/char counts."""
    return f"invalid JSON ({err.msg}: column {err.colno})"


def as_object(value: Any, where: str, field: str) -> Row:
    """A parsed row, which must be a JSON object."""
    if not isinstance(value, dict):
        raise DataError(f"{field}: {where}: expected a JSON object, got {json_type(value)}")
    return Row(value, where)


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
             int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


# -------------------------------------------------------------------------------------------- file formats


def read_jsonl(path: Path, shown: str, field: str) -> list[Row]:
    """One JSON object per line; blank lines are skipped but still counted, so `line N` is the editor's line."""
    rows = []
    for number, raw in enumerate(read_bytes(path, shown, field).split(b"\n"), start=1):
        if not raw.strip():
            continue
        where = f"{shown} line {number}"
        text = decode_utf8(raw, shown, number, field)
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{field}: {where}: {json_error(err)}") from None
        rows.append(as_object(value, where, field))
    if not rows:
        raise DataError(f"{field}: {shown}: no rows")
    return rows


def read_json(path: Path, shown: str, field: str) -> list[Row]:
    """A list of objects, or an object with a single list value ({"data": [...]}); rows are `row N`."""
    text = decode_utf8(read_bytes(path, shown, field), shown, 1, field)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{field}: {shown} line {err.lineno}: {json_error(err)}") from None
    if isinstance(value, dict):
        lists = [key for key, item in value.items() if isinstance(item, list)]
        if len(value) != 1 or len(lists) != 1:
            raise DataError(f"{field}: {shown}: expected a list of objects or an object with a single list "
                            f"value like {{\"data\": [...]}}, got an object with keys {sorted(value)[:8]}")
        value = value[lists[0]]
    if not isinstance(value, list):
        raise DataError(f"{field}: {shown}: expected a list of objects, got {json_type(value)}")
    if not value:
        raise DataError(f"{field}: {shown}: no rows")
    return [as_object(item, f"{shown} row {i}", field) for i, item in enumerate(value, start=1)]


def read_parquet(path: Path, shown: str, field: str) -> list[Row]:
    """A Parquet table, one row per record (pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{field}: {shown}: not a readable Parquet file ({one_line(err)})") from None
    return table_rows(table.to_pylist(), shown, field)


def table_rows(records: list[dict], shown: str, field: str) -> list[Row]:
    """Rows of a columnar source, `row N` 1-based; none is a DataError."""
    if not records:
        raise DataError(f"{field}: {shown}: no rows")
    return [Row(record, f"{shown} row {i}") for i, record in enumerate(records, start=1)]


# ------------------------------------------------------------------------------------ `datasets` sources


def read_saved_dataset(folder: Path, shown: str, split: str | None, field: str) -> list[Row]:
    """A `save_to_disk` folder: a Dataset, or a DatasetDict whose split must be named (`folder:split`)."""
    if (folder / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in folder.iterdir() if (p / "state.json").is_file())
        if split is None:
            raise DataError(f"{field}: {shown}: a DatasetDict folder with splits {splits}; name one as "
                            f"{shown}:{splits[0] if splits else 'train'}")
        if split not in splits:
            raise DataError(f"{field}: {shown}: no split {split!r} (the folder has {splits})")
        folder, shown = folder / split, f"{shown}:{split}"
    elif split is not None:
        raise DataError(f"{field}: {shown}:{split}: {shown} is not a DatasetDict folder, so it has no splits")
    if not (folder / "state.json").is_file():
        raise DataError(f"{field}: {shown}: a folder, but not one written by datasets save_to_disk "
                        "(no state.json or dataset_dict.json)")
    import datasets
    try:
        dataset = datasets.load_from_disk(str(folder))
    except Exception as err:  # datasets/pyarrow raise many types for a damaged folder; all are the user's data
        raise DataError(f"{field}: {shown}: cannot load the datasets folder ({one_line(err)})") from None
    return table_rows(dataset.to_list(), shown, field)


def parse_hub_source(source: str) -> tuple[str, str | None, str]:
    """`id`, `id:split` or `id:config:split` -> (id, config or None, split)."""
    parts = source.split(":")
    if len(parts) == 1:
        return parts[0], None, DEFAULT_SPLIT
    if len(parts) == 2:
        return parts[0], None, parts[1] or DEFAULT_SPLIT
    if len(parts) == 3:
        return parts[0], parts[1] or None, parts[2] or DEFAULT_SPLIT
    raise ValueError(source)


def read_hub_dataset(source: str, field: str) -> list[Row]:
    """A hub dataset split via `datasets.load_dataset`; offline and uncached fails at once, in one line."""
    try:
        dataset_id, config, split = parse_hub_source(source)
    except ValueError:
        dataset_id = ""
    if not HUB_ID_RE.match(dataset_id):
        raise DataError(f"{field}: {source!r} is not an existing file or folder, nor a hub dataset id "
                        "(id, id:split or id:config:split)")
    import datasets
    try:
        dataset = datasets.load_dataset(dataset_id, config, split=split)
    except ConnectionError as err:  # datasets' answer when offline (HF_HUB_OFFLINE=1) or the hub is unreachable
        offline = " and HF_HUB_OFFLINE=1" if datasets.config.HF_HUB_OFFLINE else ""
        raise DataError(f"{field}: hub dataset {dataset_id!r} is not in the local cache{offline} "
                        f"({one_line(err)}); download it first or give a local file") from None
    except Exception as err:  # unknown id, split or config: datasets raises several types, all user-facing
        raise DataError(f"{field}: hub dataset {source!r}: {one_line(err)}") from None
    return table_rows(dataset.to_list(), source, field)


# ------------------------------------------------------------------------------------------- row fields


def lookup(row: Row, key: str, field: str) -> Any:
    """`row.data[key]`; a dotted key (`reward_model.ground_truth`, as in verl files) walks nested objects."""
    if key in row.data:
        return row.data[key]
    value: Any = row.data
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise DataError(f"{field}: {row.where}: no key {key!r} (the row has keys {sorted(row.data)[:12]})")
        value = value[part]
    return value


def row_prompt(row: Row, prompt_key: str, field: str) -> str | list[dict]:
    """The row's prompt: a non-empty string, or a chat `messages` list of {"role": str, "content": str}."""
    value = lookup(row, prompt_key, field)
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{field}: {row.where}: {prompt_key!r} is an empty string")
        return value
    if not isinstance(value, list):
        raise DataError(f"{field}: {row.where}: {prompt_key!r} must be a string or a list of "
                        f"{{role, content}} messages, got {json_type(value)}")
    if not value:
        raise DataError(f"{field}: {row.where}: {prompt_key!r} is an empty messages list")
    for index, message in enumerate(value):
        problem = message_problem(message)
        if problem:
            raise DataError(f"{field}: {row.where}: {prompt_key}[{index}] {problem}")
    return [dict(message) for message in value]


def message_problem(message: Any) -> str | None:
    """What is wrong with one chat message, or None when it is {"role": str, "content": str, ...}."""
    if not isinstance(message, dict):
        return f"must be an object with 'role' and 'content', got {json_type(message)}"
    for key in ("role", "content"):
        if key not in message:
            return f"has no {key!r} (keys {sorted(message)})"
        if not isinstance(message[key], str):
            return f"{key!r} must be a string, got {json_type(message[key])}"
    return None


def row_answer(row: Row, answer_key: str, field: str) -> str:
    """The row's reference answer as text; numbers become strings (an integral float loses its '.0')."""
    value = lookup(row, answer_key, field)
    if value is None:
        raise DataError(f"{field}: {row.where}: {answer_key!r} is null")
    if isinstance(value, bool):  # a JSON true/false is almost surely the wrong column, not an answer
        raise DataError(f"{field}: {row.where}: {answer_key!r} is a boolean, expected a string or number")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DataError(f"{field}: {row.where}: {answer_key!r} is {value}, expected a finite number")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{field}: {row.where}: {answer_key!r} is an empty string")
        return value
    raise DataError(f"{field}: {row.where}: {answer_key!r} must be a string or number, got {json_type(value)}")
