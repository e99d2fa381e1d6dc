"""``python -m rapidmq``: the same as the ``rapidmq`` command."""

from __future__ import annotations

import sys

from rapidmq.cli import main

if __name__ == "__main__":
    sys.exit(main())
