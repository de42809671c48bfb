"""Coverage-guided fuzzing of the protocol core with atheris (libFuzzer for Python).

    pip install atheris
    python -m tests.fuzz.fuzz_protocol -max_total_time=600 /tmp/fastws-corpus

Any libFuzzer flag works (-runs=N, -jobs=N, -max_len=N). A crash writes its input to
./crash-<sha1>; replay it with `python -m tests.fuzz.fuzz_protocol crash-<sha1>` and turn it
into a regression test in tests/protocol/. The test suite runs this for a few seconds
(tests/fuzz/test_fuzz.py).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["fastws"]):
    from tests.fuzz.targets import one_input


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
