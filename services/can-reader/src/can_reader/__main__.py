"""``python -m can_reader``."""

import sys

from can_reader.app import main

sys.exit(main())
