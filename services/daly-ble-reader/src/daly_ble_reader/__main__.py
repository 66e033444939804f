"""``python -m daly_ble_reader``."""

import sys

from daly_ble_reader.app import main

sys.exit(main())
