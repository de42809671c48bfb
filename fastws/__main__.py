"""``python -m fastws``: the same as the ``fastws`` command."""

import sys

from fastws.cli import main

if __name__ == "__main__":
    sys.exit(main())
