"""An application that imports in the master but fails to import in every worker.

The master imports the application once to check the command line; each worker imports it again
after the fork. This module stands for code that broke in between (a deploy in progress): the
first import arms an environment variable that the forked workers inherit, and an armed import
raises, as a broken module would.
"""

import os

_ARMED = "FASTWS_TEST_BOOT_FAILURE_ARMED"

if os.environ.get(_ARMED) == str(os.getppid()):
    raise RuntimeError("deliberate boot failure: the application cannot be imported in a worker")
os.environ[_ARMED] = str(os.getpid())


async def handler(ws):  # type: ignore[no-untyped-def]
    await ws.close()
