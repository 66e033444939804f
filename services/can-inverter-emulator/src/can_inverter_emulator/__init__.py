"""can-inverter-emulator: the bank as one Pylontech LV CAN BMS, one output per inverter."""
