"""``python -m hass_discovery``."""

import sys

from hass_discovery.app import main

sys.exit(main())
