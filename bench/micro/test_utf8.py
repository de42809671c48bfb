"""UTF-8 validation: whole-message decode (single frames) vs the incremental decoder."""

import pytest

from fastws.protocol.utf8 import TextDecoder

TEXT = ("ASCII and ünïcödé κόσμε " * 4000).encode()


@pytest.mark.parametrize("size", [64, 4096, 65536])
def test_decode_whole(benchmark, size: int) -> None:
    data = TEXT[:size].decode("utf-8", "ignore").encode()
    benchmark(data.decode)


@pytest.mark.parametrize("size", [64, 4096, 65536])
def test_decode_in_4_pieces(benchmark, size: int) -> None:
    data = TEXT[:size].decode("utf-8", "ignore").encode()
    q = len(data) // 4

    def run() -> str:
        decoder = TextDecoder()
        for i in range(4):
            decoder.decode(data[i * q : (i + 1) * q if i < 3 else None])
        return decoder.finish()

    assert benchmark(run) == data.decode()
