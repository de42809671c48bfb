"""Compile the C helpers (load generator, TCP echo) at run time, cached by source hash.

They are built with the machine's own `cc -O2` into a temporary directory rather than
shipped as binaries: nothing to install, and `-march` stays the compiler's default so the
numbers do not depend on a build host.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

C_DIR = Path(__file__).resolve().parent / "c"
PROGRAMS = ("loadgen", "echo")
#: libraries each helper links: the load generator deflates and inflates (scenario g) with
#: zlib, whose headers come with zlib1g-dev on Debian
LIBS: dict[str, tuple[str, ...]] = {"loadgen": ("-lz",)}


class BuildError(RuntimeError):
    """No C compiler, or the helper did not compile."""


def compiler() -> str | None:
    """The C compiler to use: $CC, else cc/gcc/clang from PATH."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def build(name: str, cache_dir: Path | None = None) -> Path:
    """Return the path of the compiled helper `name`, compiling it if its source changed."""
    source = C_DIR / f"{name}.c"
    cc = compiler()
    if cc is None:
        raise BuildError("no C compiler found (set CC or install cc): bench/ builds its helpers")
    libs = LIBS.get(name, ())
    digest = hashlib.sha256(source.read_bytes() + " ".join((cc, *libs)).encode()).hexdigest()[:16]
    base = cache_dir or Path(tempfile.gettempdir()) / f"fastws-bench-{os.getuid()}"
    target = base / f"{name}-{digest}"
    if target.exists():
        return target
    base.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    proc = subprocess.run(
        [cc, "-O2", "-Wall", "-o", str(partial), str(source), *libs],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        hint = "\n(install zlib's headers: zlib1g-dev)" if "zlib.h" in proc.stderr else ""
        raise BuildError(f"{cc} failed on {source.name}:\n{proc.stderr}{hint}")
    partial.replace(target)  # atomic: a concurrent build never sees a half-written binary
    return target
