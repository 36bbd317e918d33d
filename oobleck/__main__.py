"""``python -m oobleck``: the same as the ``oobleck`` command."""

import sys

from oobleck.cli._parser import main

sys.exit(main())
