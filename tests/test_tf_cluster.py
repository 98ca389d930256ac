"""TF_CONFIG validation for `multiworker`: framework-free, so it runs without TensorFlow."""

from __future__ import annotations

import json
import sys

import pytest

from parallel_vision.engines.tensorflow.cluster import ClusterTask, parse_tf_config
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


def _tasks(cluster: dict[str, list[str]]) -> list[ClusterTask]:
    return [parse_tf_config(_tf_config(cluster, {"type": job, "index": i}), workers=None)
            for job in ("chief", "worker") for i in range(len(cluster.get(job, [])))]


def test_local_rank_counts_the_tasks_before_this_one_on_its_host() -> None:
    """pin_threads takes core slice `local_rank` on each host (as torchrun's LOCAL_RANK does)."""
    cluster = {"chief": ["a:1"], "worker": ["b:1", "a:2", "b:2", "a:3"]}
    assert [(t.rank, t.local_rank) for t in _tasks(cluster)] == [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2)]


def test_local_rank_is_zero_with_one_task_per_host_and_the_rank_on_one_host() -> None:
    assert [t.local_rank for t in _tasks({"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]})] == [0, 0]
    one_host = _tasks({"worker": ["127.0.0.1:2001", "127.0.0.1:2002", "127.0.0.1:2003"]})
    assert [t.local_rank for t in one_host] == [t.rank for t in one_host] == [0, 1, 2]
    ipv6 = _tasks({"worker": ["[::1]:2001", "[::1]:2002"]})
    assert [t.local_rank for t in ipv6] == [0, 1]
