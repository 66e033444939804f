"""daly-ble-reader: Daly BMSes (A5, Sinowealth, D2, 0x81) over Bluetooth LE and serial."""
