from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kulak.errors import ModelError
from sentiment.onnx_backend import EXPORT_SCHEME, ensure_int8_model


def test_ensure_int8_model__a_failed_export_is_reported_and_leaves_no_model(tmp_path: Path) -> None:
    checkpoint = tmp_path / "not-a-checkpoint"
    checkpoint.mkdir()
    with pytest.raises(ModelError, match=r"Exporting the int8 model failed \(exit code 2.*model.backend = 'torch'"):
        ensure_int8_model(checkpoint)
    assert not (tmp_path / f"not-a-checkpoint-{EXPORT_SCHEME}").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-checkpoint"], "no half-built directory is left"


@pytest.mark.parametrize("code", [-9, 137])
def test_ensure_int8_model__an_export_killed_for_memory_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def killed(args: list[str], check: bool) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(args, code)

    monkeypatch.setattr(subprocess, "run", killed)
    with pytest.raises(ModelError, match=r"lack of memory \(it needs about 3.2 GB once\).*model.backend = 'torch'"):
        ensure_int8_model(tmp_path / "checkpoint")
