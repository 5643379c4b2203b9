"""The gRPC modules are what the proto file generates (devenv/protogen.py, `make proto`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from devenv import protogen


def test_the_committed_modules_are_what_the_proto_generates() -> None:
    assert protogen.stale(protogen.OUT) == [], "run: make proto"


def test_check_mode_reports_stale_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert protogen.main(["--check", "--out", str(tmp_path)]) == 1
    assert "taskq_pb2.py is stale" in capsys.readouterr().err
    assert protogen.main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(protogen.GENERATED)
    assert protogen.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "taskq_pb2_grpc.py").write_text("# edited\n")
    assert protogen.main(["--check", "--out", str(tmp_path)]) == 1
