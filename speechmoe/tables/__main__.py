"""``python -m speechmoe.tables``: see :mod:`speechmoe.tables.cli`."""

import sys

from speechmoe.tables.cli import main

sys.exit(main())
