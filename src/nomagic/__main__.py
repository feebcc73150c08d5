"""``python -m nomagic``: the same as the ``nomagic`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
