"""``python -m nerdistill.report <sweep dir> [<sweep dir> ...] [--out DIR]``: tables and plots for a
sweep, or an annotate sweep side by side (:mod:`nerdistill.reporting`)."""

from __future__ import annotations

import sys

from nerdistill.reporting.tables import main

if __name__ == "__main__":
    sys.exit(main())
