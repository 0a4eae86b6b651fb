"""``python -m verirl.cli``: the ``verirl`` command."""

import sys

from verirl.cli import main

sys.exit(main())
