"""``python -m bank_aggregator``."""

import sys

from bank_aggregator.app import main

sys.exit(main())
