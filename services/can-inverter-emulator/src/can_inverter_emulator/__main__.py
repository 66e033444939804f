"""``python -m can_inverter_emulator``."""

import sys

from can_inverter_emulator.app import main

sys.exit(main())
