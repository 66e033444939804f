"""``python -m am2_modbus_reader``."""

import sys

from am2_modbus_reader.app import main

sys.exit(main())
