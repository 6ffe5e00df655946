"""The one configuration object: defaults, validation with the fix in the message, round trip."""

from __future__ import annotations

import pytest

from rag import Config, ConfigError


def test_defaults_are_valid_and_round_trip():
    config = Config()
    assert Config.from_dict(config.to_dict()) == config
    assert set(config.index_settings()) == set(Config.INDEX_FIELDS)


@pytest.mark.parametrize("changes, message", [
    ({"chunk_overlap_tokens": 200, "chunk_tokens": 100}, "must be less than chunk_tokens"),
    ({"top_k": 0}, "top_k must be a positive integer"),
    ({"retriever": "magic"}, "choose one of dense, bm25, hybrid"),
    ({"embed_dtype": "float16"}, "choose one of auto, float32, bfloat16"),
    ({"dense_weight": 1.5}, "between 0 and 1"),
    ({"index_name": "../x"}, "plain folder name"),
])
def test_bad_values_fail_on_construction(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config().replace(**changes)


def test_unknown_setting_is_named():
    with pytest.raises(ConfigError, match="unknown setting.*chunk_size"):
        Config().replace(chunk_size=3)


def test_benchmarks_dir_takes_the_explicit_folder_then_the_environment(tmp_path, monkeypatch):
    from rag.config import benchmarks_dir
    from rag.errors import InputError

    (tmp_path / "b" / "squad").mkdir(parents=True)
    (tmp_path / "b" / "squad" / "dev.json").write_text("{}")
    assert benchmarks_dir(tmp_path / "b", ("squad/dev.json",)) == (tmp_path / "b").resolve()
    monkeypatch.setenv("RAG_BENCHMARKS_DIR", str(tmp_path / "b"))
    assert benchmarks_dir(None, ("squad/dev.json",)) == (tmp_path / "b").resolve()
    with pytest.raises(InputError, match=r"squad/train.json\) are not under .*b; .*RAG_BENCHMARKS_DIR"):
        benchmarks_dir(None, ("squad/train.json",))  # the folder named is the only one tried
