"""The gRPC service's Python modules, generated from its proto file by grpcio-tools' protoc.

    python -m devenv.protogen            # rewrite api/src/taskq_api/grpc/v1/taskq_pb2*
    python -m devenv.protogen --check    # exit 1 when they differ from what the proto generates
    (`make proto` runs the first)

The proto file is api/proto/taskq/v1/taskq.proto (package taskq.v1), where clients in other
languages expect it. Python modules follow the proto file's path, and `taskq.v1` would land in
the worker's `taskq` package, so protoc reads the file under the virtual path
taskq_api/grpc/v1/: the modules are `taskq_api.grpc.v1.taskq_pb2` and `..._pb2_grpc`. Their
type stubs (.pyi) come from mypy-protobuf, so our code that uses them is type-checked.

The modules are committed, so that installing taskq-api needs no compiler: grpcio-tools is a
development dependency only. tests/unit/api/test_proto.py fails while they are stale; the
versions of grpcio-tools and mypy-protobuf in uv.lock make the output reproducible.
"""

from __future__ import annotations

import argparse
import importlib.resources
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROTO = REPO / "api/proto/taskq/v1/taskq.proto"
PACKAGE = "taskq_api/grpc/v1"
OUT = REPO / "api/src" / PACKAGE
REGENERATE = "make proto"
# What protoc writes for taskq.proto: the messages, the service, and the stubs of each.
GENERATED = ("taskq_pb2.py", "taskq_pb2.pyi", "taskq_pb2_grpc.py", "taskq_pb2_grpc.pyi")


def generate() -> dict[str, str]:
    """File name -> content, as protoc writes them."""
    plugins = Path(sys.executable).parent  # mypy-protobuf's protoc plugins, in this venv
    well_known = importlib.resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"--proto_path={PACKAGE}={PROTO.parent}",
                f"--proto_path={well_known}",
                f"--plugin=protoc-gen-mypy={plugins / 'protoc-gen-mypy'}",
                f"--plugin=protoc-gen-mypy_grpc={plugins / 'protoc-gen-mypy_grpc'}",
                f"--python_out={out}",
                f"--grpc_python_out={out}",
                f"--mypy_out={out}",
                f"--mypy_grpc_out={out}",
                f"{PACKAGE}/{PROTO.name}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"protoc failed ({result.returncode}): {result.stderr.strip()}")
        directory = Path(out) / PACKAGE
        return {name: (directory / name).read_text(encoding="utf-8") for name in GENERATED}


def stale(directory: Path) -> list[str]:
    """Files of `directory` that differ from what the proto generates."""
    return [
        name
        for name, text in generate().items()
        if not (directory / name).is_file()
        or (directory / name).read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.protogen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=OUT, help="default: %(default)s")
    args = parser.parse_args(argv)
    if args.check:
        names = stale(args.out)
        for name in names:
            print(f"{args.out / name} is stale: run `{REGENERATE}`", file=sys.stderr)
        return 1 if names else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in generate().items():
        (args.out / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
