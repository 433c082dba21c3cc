"""``python -m dmi``: the same as the ``dmi`` command."""

import sys

from dmi.cli import main

sys.exit(main())
