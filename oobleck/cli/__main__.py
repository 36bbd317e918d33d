"""``python -m oobleck.cli``: the same as the ``oobleck`` command."""

import sys

from oobleck.cli._parser import main

sys.exit(main())
