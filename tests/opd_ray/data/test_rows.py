"""Reading prompt rows: every format gives the same rows; every bad input is a one-line DataError naming
the config field, the file and the line or row."""
import json

import pytest

from opd_ray.data.rows import DataError, Row, load_rows, load_rows_many, row_answer, row_prompt

FIELD = "data.train_files"
ROWS = [
    {"prompt": "What is 1+1?", "answer": "2", "level": 1},
    {"prompt": "Solve x+3=5.", "answer": "2", "level": 2},
    {"prompt": "Name the capital of France.", "answer": "Paris", "level": 3},
]


@pytest.fixture(autouse=True)
def quiet_datasets():
    import datasets
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_source(kind, tmp_path, rows=ROWS):
    """One source of `kind` holding `rows`; returns the string a config would hold."""
    if kind == "jsonl":
        return str(write_jsonl(tmp_path / "x.jsonl", rows))
    if kind == "json":
        (tmp_path / "x.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
        return str(tmp_path / "x.json")
    if kind == "json_wrapped":
        (tmp_path / "x.json").write_text(json.dumps({"data": rows}), encoding="utf-8")
        return str(tmp_path / "x.json")
    if kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "x.parquet")
        return str(tmp_path / "x.parquet")
    import datasets
    if kind == "save_to_disk":
        datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
        return str(tmp_path / "saved")
    assert kind == "dataset_dict"
    dataset = datasets.Dataset.from_list(rows)
    datasets.DatasetDict({"train": dataset, "test": dataset}).save_to_disk(str(tmp_path / "dd"))
    return str(tmp_path / "dd") + ":test"


def assert_data_error(call, *fragments):
    """The call raises a one-line DataError that contains every fragment; returns the message."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(FIELD + ": "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


@pytest.mark.parametrize("kind", ["jsonl", "json", "json_wrapped", "parquet", "save_to_disk", "dataset_dict"])
def test_every_format_round_trips_the_same_rows(kind, tmp_path):
    source = write_source(kind, tmp_path)
    rows = load_rows(source, FIELD)
    assert [r.data for r in rows] == ROWS
    assert all(isinstance(r, Row) for r in rows)
    assert rows[2].where.endswith(("line 3", "row 3"))
    assert rows[0].where.startswith(source)


def test_where_names_file_lines_and_rows(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text("\n" + json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + "\n\n", encoding="utf-8")
    rows = load_rows(str(path), FIELD)
    assert [r.where for r in rows] == [f"{path} line 2", f"{path} line 4"]  # blank lines still counted
    parquet = write_source("parquet", tmp_path)
    assert [r.where for r in load_rows(parquet, FIELD)][-1] == f"{parquet} row 3"


def test_many_sources_concatenate_in_order(tmp_path):
    first = write_jsonl(tmp_path / "a.jsonl", ROWS[:2])
    second = write_source("parquet", tmp_path, ROWS[2:])
    rows = load_rows_many([str(first), second], FIELD)
    assert [r.data for r in rows] == ROWS
    assert load_rows_many(str(first), FIELD)[0].data == ROWS[0]
    assert_data_error(lambda: load_rows_many([], FIELD), "no files given")


def test_messages_prompt_and_answers(tmp_path):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"}]
    rows = [{"messages": messages, "answer": 2}, {"messages": messages, "answer": 2.0},
            {"messages": messages, "answer": 0.5}, {"messages": messages, "reward_model": {"ground_truth": "7"}}]
    loaded = load_rows(write_source("jsonl", tmp_path, rows), FIELD)  # Parquet would need one schema
    assert row_prompt(loaded[0], "messages", FIELD) == messages
    assert [row_answer(r, "answer", FIELD) for r in loaded[:3]] == ["2", "2", "0.5"]
    assert row_answer(loaded[3], "reward_model.ground_truth", FIELD) == "7"  # verl's nested layout
    assert row_prompt(Row({"prompt": "hi"}, "f line 1"), "prompt", FIELD) == "hi"


def test_missing_file_and_unknown_suffix(tmp_path):
    missing = tmp_path / "nope.jsonl"
    assert_data_error(lambda: load_rows(str(missing), FIELD), str(missing), "file not found")
    assert_data_error(lambda: load_rows("data/nope.parquet", FIELD), "data/nope.parquet", "file not found")
    csv = tmp_path / "x.csv"
    csv.write_text("prompt,answer\n1+1,2\n")
    assert_data_error(lambda: load_rows(str(csv), FIELD), str(csv), "unknown file type '.csv'")


@pytest.mark.parametrize("name, content, fragments", [
    ("empty.jsonl", b"", ["file is empty"]),
    ("blank.jsonl", b"\n \n\n", ["file is empty"]),
    ("empty.json", b"  ", ["file is empty"]),
    ("none.json", b"[]", ["no rows"]),
    ("bad.jsonl", b'{"prompt": "a"}\n\n{"prompt" "b"}\n', ["line 3: invalid JSON (Expecting ':' delimiter: "
                                                          "column 11)"]),
    ("bad.json", b'[\n {"prompt": "a"},\n {"prompt": "b",}\n]', ["line 3: invalid JSON"]),
    ("utf8.jsonl", b'{"prompt": "a"}\n{"prompt": "caf\xe9"}\n', ["line 2: invalid UTF-8 (byte 0xe9"]),
    ("utf8.json", b'[\n{"prompt": "a"},\n\n{"prompt": "\xff"}]', ["line 4: invalid UTF-8 (byte 0xff"]),
    ("list.jsonl", b'{"prompt": "a"}\n["b"]\n', ["line 2: expected a JSON object, got a list"]),
    ("scalar.json", b'[{"prompt": "a"}, 3]', ["row 2: expected a JSON object, got a number"]),
    ("object.json", b'{"a": [], "b": []}', ["expected a list of objects or an object with a single list"]),
    ("string.json", b'"hello"', ["expected a list of objects, got a string"]),
])
def test_bad_files_name_file_and_line(tmp_path, name, content, fragments):
    path = tmp_path / name
    path.write_bytes(content)
    assert_data_error(lambda: load_rows(str(path), FIELD), str(path), *fragments)


def test_bad_parquet_and_folders(tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    assert_data_error(lambda: load_rows(str(broken), FIELD), str(broken), "not a readable Parquet file")
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"prompt": pa.array([], pa.string())}), tmp_path / "empty.parquet")  # 0 rows
    assert_data_error(lambda: load_rows(str(tmp_path / "empty.parquet"), FIELD), "empty.parquet", "no rows")
    (tmp_path / "plain").mkdir()
    assert_data_error(lambda: load_rows(str(tmp_path / "plain"), FIELD), "not one written by datasets")
    source = write_source("dataset_dict", tmp_path).removesuffix(":test")
    assert_data_error(lambda: load_rows(source, FIELD), source, "splits ['test', 'train']", f"{source}:test")
    assert_data_error(lambda: load_rows(source + ":dev", FIELD), "no split 'dev'")


def test_hub_id_offline_fails_fast_in_one_line(monkeypatch, no_network):
    import datasets
    import huggingface_hub.constants
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert_data_error(lambda: load_rows("opd-ray-tests/no-such-dataset:test", FIELD),
                                "'opd-ray-tests/no-such-dataset'", "not in the local cache")
    assert no_network == []  # fast because the hub is never asked, whatever the machine's speed
    assert_data_error(lambda: load_rows("not a hub id!", FIELD), "nor a hub dataset id")


@pytest.mark.parametrize("data, key, fragment", [
    ({"question": "a"}, "prompt", "no key 'prompt' (the row has keys ['question'])"),
    ({"prompt": 3}, "prompt", "'prompt' must be a string or a list of {role, content} messages, got a number"),
    ({"prompt": ""}, "prompt", "'prompt' is an empty string"),
    ({"prompt": []}, "prompt", "empty messages list"),
    ({"prompt": ["hi"]}, "prompt", "prompt[0] must be an object with 'role' and 'content', got a string"),
    ({"prompt": [{"role": "user"}]}, "prompt", "prompt[0] has no 'content'"),
    ({"prompt": [{"role": "user", "content": "a"}, {"role": 1, "content": "b"}]}, "prompt",
     "prompt[1] 'role' must be a string"),
])
def test_bad_prompts_name_row_and_key(data, key, fragment):
    assert_data_error(lambda: row_prompt(Row(data, "d.jsonl line 4"), key, FIELD), "d.jsonl line 4", fragment)


@pytest.mark.parametrize("data, fragment", [
    ({"prompt": "a"}, "no key 'answer' (the row has keys ['prompt'])"),
    ({"answer": None}, "'answer' is null"),
    ({"answer": ""}, "'answer' is an empty string"),
    ({"answer": True}, "'answer' is a boolean"),
    ({"answer": float("nan")}, "expected a finite number"),
    ({"answer": [1, 2]}, "'answer' must be a string or number, got a list"),
])
def test_bad_answers_name_row_and_key(data, fragment):
    assert_data_error(lambda: row_answer(Row(data, "d.parquet row 9"), "answer", FIELD), "d.parquet row 9",
                      fragment)
