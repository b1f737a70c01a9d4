"""``python -m anybit``: the same as the ``anybit`` command."""

import sys

from anybit.cli import main

sys.exit(main())
