"""Fetch a pinned Go toolchain from the Go module proxy (module golang.org/toolchain).

Used by tools/build.sh when the machine has no Go >= 1.26 (e.g. Debian 12 ships 1.19, too old
even to switch toolchains by itself). This is the same module `GOTOOLCHAIN=auto` downloads.

    python3 tools/fetch_go.py VERSION ARCH SHA256 DEST

downloads golang.org/toolchain@v0.0.1-goVERSION.linux-ARCH.zip from the first proxy in $GOPROXY
(default https://proxy.golang.org), checks its sha256, and unpacks it as a GOROOT into DEST.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile


def proxy() -> str:
    for entry in os.environ.get("GOPROXY", "").replace("|", ",").split(","):
        if entry.startswith(("https://", "http://")):
            return entry.rstrip("/")
    return "https://proxy.golang.org"


def main() -> None:
    version, arch, sha256, dest = sys.argv[1:5]
    url = f"{proxy()}/golang.org/toolchain/@v/v0.0.1-go{version}.linux-{arch}.zip"
    print(f"fetch_go.py: downloading {url}", file=sys.stderr)
    with urllib.request.urlopen(url, timeout=600) as response:  # noqa: S310 (pinned https URL)
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        sys.exit(f"fetch_go.py: sha256 of {url} is {digest}, expected {sha256}")
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".go-", dir=parent)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            # entries are golang.org/toolchain@v0.0.1-goX.linux-ARCH/<path inside GOROOT>
            parts = info.filename.split("/", 2)
            if len(parts) < 3 or not parts[2] or info.is_dir():
                continue
            rel = parts[2]
            if rel.startswith("/") or ".." in rel.split("/"):
                sys.exit(f"fetch_go.py: unsafe path in archive: {info.filename}")
            target = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            # Module zips carry no file modes; Go itself marks these executable the same way.
            if rel.startswith(("bin/", "pkg/tool/")):
                os.chmod(target, 0o755)  # noqa: S103 (executables, as in any Go install)
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)


if __name__ == "__main__":
    main()
