"""What the CLI commands share: settings errors named once, and the one wait loop (``driftline.cli``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from driftline.cli import context, prefect_api
from driftline.errors import InputError


def _clear(monkeypatch: pytest.MonkeyPatch, state_dir: Path) -> None:
    for name in [n for n in os.environ if n.startswith("DRIFTLINE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DRIFTLINE_STATE_DIR", str(state_dir))


def test_an_invalid_setting_is_named_without_echoing_its_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clear(monkeypatch, tmp_path)
    monkeypatch.setenv("DRIFTLINE_S3_MAX_ATTEMPTS", "not-a-number-secret")
    for load in (context.load_settings, context.local_settings, context.remote):
        with pytest.raises(InputError, match=r"invalid DRIFTLINE_\* setting: DRIFTLINE_S3_MAX_ATTEMPTS") as raised:
            load()
        assert "not-a-number-secret" not in str(raised.value)


def test_a_damaged_stack_state_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clear(monkeypatch, tmp_path)
    (tmp_path / "stack.json").write_text('{"s3_endpoint_url": "http://127.0.0.1:5250"}')  # keys missing
    with pytest.raises(InputError, match=rf"invalid local stack state in {tmp_path}"):
        context.local_settings()


def test_poll_returns_the_first_answer_and_asks_once_without_time_to_wait() -> None:
    answers = iter([None, None, "found", "later"])
    calls: list[int] = []

    def check() -> str | None:
        calls.append(1)
        return next(answers)

    assert prefect_api.poll(check, timeout=60, every=0) == "found" and len(calls) == 3
    calls.clear()
    assert prefect_api.poll(lambda: calls.append(1), timeout=-1, every=0) is None and len(calls) == 1
