"""Where received payloads live while they are assembled.

Small payloads are plain `bytes` made by the unmasking step. A frame whose payload does not
arrive in one read gets a destination buffer sized from its declared length, which the I/O
layer may hand to the kernel directly (`BufferedProtocol.get_buffer`). Above `MMAP_MIN` that
buffer is an anonymous mmap: its pages are committed only when written, so a peer that
declares a 2 GiB frame and sends nothing costs address space, not memory.
"""

from __future__ import annotations

import contextlib
import mmap

__all__ = ["MMAP_MIN", "allocate"]

MMAP_MIN = 1 << 20


def allocate(size: int) -> bytearray | mmap.mmap:
    """A writable buffer of `size` bytes whose untouched pages cost no memory when large."""
    if size < MMAP_MIN:
        return bytearray(size)
    return mmap.mmap(-1, size)


def release(buf: object) -> None:
    """Return an mmap'ed buffer's pages to the OS now; other buffers are left to the GC.

    A view still exported by the buffer (a memoryview somebody holds) makes that impossible:
    then the mapping goes when the last view does.
    """
    if isinstance(buf, mmap.mmap):
        with contextlib.suppress(BufferError):
            buf.close()
