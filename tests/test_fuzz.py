"""The fuzz suite: no input crashes, hangs or leaks.

* Media: 1,200 corrupted files made from the bundled samples with a fixed seed (``support/corrupt_media.py``:
  truncations, bit flips, zeroed ranges, swapped headers, wrong extensions, zero-length files, huge declared sizes,
  random tails) through the reader in-process; 50 of them through ``edge score`` and ``edge replay`` as
  subprocesses (slow). Each ends cleanly or with one ``SourceError`` line, within the read timeout, in bounded
  memory.
* Configs (Hypothesis): every config made by mutating a valid one either validates or fails with every problem
  on a YAML line.
* Event messages (Hypothesis): every message a topic could hold is either handed over or dead-lettered with a
  reason, and the counts add up.
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DEFAULT_MODEL, ROOT
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.alert_messages import message
from support.corrupt_media import KINDS, base_clips, corruptions, read_outcome
from test_subscriber_faults import subscribe

from alerts.sinks import DeadLetterFile
from edge.config import EdgeConfig, load_config
from edge.errors import ConfigError

SEED = 21
READ_TIMEOUT_S = 5.0  # SourceSpec's default read_timeout_s


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return base_clips(tmp_path_factory.mktemp("fuzz-base"))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.timeout(600)
def test_corrupted_media_through_the_reader(bases: list[Path], tmp_path: Path) -> None:
    before = _peak_rss_mb()
    outcomes: Counter[tuple[str, str]] = Counter()
    slowest = 0.0
    for name, kind, data in corruptions(bases, 1200, SEED):
        path = tmp_path / name
        path.write_bytes(data)
        t0 = time.monotonic()
        outcomes[kind, read_outcome(path)] += 1  # anything but a SourceError propagates and fails the test
        slowest = max(slowest, time.monotonic() - t0)
        path.unlink()
    by_kind = Counter(kind for kind, _ in outcomes.elements())
    assert set(by_kind) == set(KINDS) and sum(by_kind.values()) == 1200
    assert slowest < READ_TIMEOUT_S  # nothing waited out a timeout: a file either reads or fails at once
    assert _peak_rss_mb() - before < 300
    # what the run found, for the README (-rP shows it)
    print(json.dumps({f"{k}/{o}": n for (k, o), n in sorted(outcomes.items())}, indent=0))  # noqa: T201


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_sample_of_corrupted_media_through_edge_score_and_replay(bases: list[Path], tmp_path: Path) -> None:
    inputs = list(corruptions(bases, 1200, SEED))
    chosen = random.Random(SEED).sample(inputs, 50)
    codes: Counter[int] = Counter()
    for i, (name, _, data) in enumerate(chosen):
        path = tmp_path / name
        path.write_bytes(data)
        argv = (
            ["score", str(path), "--out", str(tmp_path / "s.csv")]
            if i % 5
            else ["replay", str(path), "--outbox", str(tmp_path / "o.db"), "-q"]
        )
        proc = subprocess.run(
            [sys.executable, "-c", _EDGE_WITH_PEAK_RSS, *argv, "--model", str(DEFAULT_MODEL)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
        codes[proc.returncode] += 1
        assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, (name, proc.stderr)
        peak_mb = int(proc.stderr.rsplit("peak-rss-kb ", 1)[1]) // 1024
        assert peak_mb < 600, (name, peak_mb)
        if proc.returncode == 1:
            assert any(line.startswith("edge: ") for line in proc.stderr.splitlines()), (name, proc.stderr)
    assert sum(codes.values()) == 50
    print(dict(codes))  # noqa: T201 - for the README (-rP shows it)


# ``edge ARGV`` that reports its own peak RSS (VmHWM) last on stderr: ru_maxrss of a child counts the pytest
# process it was forked from
_EDGE_WITH_PEAK_RSS = """\
import atexit, re, runpy, sys
atexit.register(lambda: print("peak-rss-kb", re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1],
                              file=sys.stderr))
sys.argv = ["edge", *sys.argv[1:]]
runpy.run_module("edge.cli", run_name="__main__")
"""


# -- configs ---------------------------------------------------------------------------------------------------

VALID = {
    "site": "lobby",
    "events": {"threshold": 3.0, "min_duration_s": 0.6},
    "health": {"port": 9108},
    "kafka": {"bootstrap": ["k:9092"], "topic": "lepton.events"},
    "cameras": [
        {"id": "door", "url": "rtsp://viewer:secret@192.0.2.10:554/stream1", "open_timeout_s": 5},
        {"id": "lobby", "url": "lobby.mkv", "replay": "fast", "mask": [[0.0, 0.0, 0.2, 0.1]]},
    ],
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(
        ["", "rtsp://", "http://a:b@h:99999/x", "-1", "1e9", "\x1b[2J", "ü", "~", "&a", "*a", "!!python/object"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_configs(draw: st.DrawFn) -> Any:
    doc = json.loads(json.dumps(VALID))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(doc)[1:]))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(values)
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=mutated_configs())
def test_every_config_validates_or_names_the_line_of_each_problem(doc: Any, tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        event("invalid")
        assert exc.problems
        for problem in exc.problems:
            assert problem.startswith("line "), problem
            assert "secret" not in problem  # the camera password never reaches an error
        return
    event("valid")
    assert isinstance(cfg, EdgeConfig)


# -- event messages -----------------------------------------------------------------------------------------------

FIELDS = list(json.loads(message().to_json()))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def wire_values(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.sampled_from(["valid", "mutated", "version", "bytes", "none"]))
    base = json.loads(message(f"ev-{draw(st.integers(0, 10**9))}").to_json())
    if kind == "valid":
        return json.dumps(base).encode()
    if kind == "mutated":
        for _ in range(draw(st.integers(1, 3))):
            field = draw(st.sampled_from([*FIELDS, "extra"]))
            if draw(st.booleans()):
                base[field] = draw(json_values)
            else:
                base.pop(field, None)
        return json.dumps(base).encode()
    if kind == "version":
        base["schema_version"] = draw(st.sampled_from(["1.4", "2.0", "0.9", "1.2.1", "x", "10.0", ""]))
        return json.dumps(base).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(wire_values(), min_size=1, max_size=12))
def test_every_message_is_handed_over_or_dead_lettered_with_a_reason(
    values: list[bytes | None], tmp_path: Path
) -> None:
    path = tmp_path / "dead.jsonl"
    path.unlink(missing_ok=True)
    dead = DeadLetterFile(path)
    sub, consumer = subscribe(values, dead_letter=dead, on_future_schema="dead-letter")
    got = list(sub.messages(idle_timeout_s=0))
    dead.close()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    stats = sub.stats()
    assert len(got) + stats.duplicates + len(records) == len(values)
    assert stats.dead_lettered == stats.invalid == len(records)
    assert all(r["reason"] and r["kind"] == "poison" for r in records)
    assert consumer.committed == len(values)  # every one handled, none left behind
    event(f"dead-lettered: {'some' if records else 'none'}")
