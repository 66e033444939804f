"""``python -m pylontech_rs485_reader``."""

import sys

from pylontech_rs485_reader.app import main

sys.exit(main())
