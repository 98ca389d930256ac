"""TF_CONFIG validation for `multiworker`: framework-free, so it runs without TensorFlow."""

from __future__ import annotations

import json
import sys

import pytest

from parallel_vision.engines.tensorflow.cluster import parse_tf_config
from parallel_vision.errors import ConfigError


def _tf_config(cluster: object, task: object) -> str:
    return json.dumps({"cluster": cluster, "task": task})


def test_valid_workers_only() -> None:
    text = _tf_config({"worker": ["127.0.0.1:2001", "127.0.0.1:2002"]}, {"type": "worker", "index": 1})
    task = parse_tf_config(text, workers=2)
    assert (task.world_size, task.rank, task.is_writer) == (2, 1, False)
    first = parse_tf_config(text.replace('"index": 1', '"index": 0'), workers=2)
    assert first.is_writer


def test_chief_is_the_writer_and_rank_zero() -> None:
    cluster = {"chief": ["h0:1000"], "worker": ["h1:1000", "h2:1000"]}
    chief = parse_tf_config(_tf_config(cluster, {"type": "chief", "index": 0}), workers=3)
    worker0 = parse_tf_config(_tf_config(cluster, {"type": "worker", "index": 0}), workers=3)
    assert chief.is_writer and chief.rank == 0
    assert not worker0.is_writer and worker0.rank == 1


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (None, "needs TF_CONFIG"),
        ("", "needs TF_CONFIG"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), "no 'cluster'"),
        (_tf_config({"worker": "127.0.0.1:1"}, {"type": "worker", "index": 0}), "non-empty list"),
        (_tf_config({"worker": ["localhost"]}, {"type": "worker", "index": 0}), "host:port"),
        (_tf_config({"worker": ["h:99999"]}, {"type": "worker", "index": 0}), "host:port"),
        (_tf_config({"worker": ["h:1", "h:1"]}, {"type": "worker", "index": 0}), "twice"),
        (_tf_config({"worker": ["h:1"], "ps": ["h:2"]}, {"type": "worker", "index": 0}), "'ps'"),
        (_tf_config({"chief": ["h:1", "h:2"]}, {"type": "chief", "index": 0}), "at most one chief"),
        (json.dumps({"cluster": {"worker": ["h:1", "h:2"]}}), "no 'task'"),
        (_tf_config({"worker": ["h:1", "h:2"]}, {"type": "evaluator", "index": 0}), "task.type"),
        (_tf_config({"worker": ["h:1", "h:2"]}, {"type": "worker", "index": "0"}), "integer"),
        (_tf_config({"worker": ["h:1", "h:2"]}, {"type": "worker", "index": 2}), "out of range"),
        (_tf_config({"worker": ["h:1", "h:2", "h:3"]}, {"type": "worker", "index": 0}), "--workers 2"),
    ],
)
def test_invalid_tf_config_is_a_one_line_config_error(text: str | None, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_tf_config(text, workers=2)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_parsing_never_imports_a_framework() -> None:
    parse_tf_config(_tf_config({"worker": ["h:1", "h:2"]}, {"type": "worker", "index": 0}), workers=2)
    assert "tensorflow" not in sys.modules
