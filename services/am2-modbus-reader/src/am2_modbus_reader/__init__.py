"""AM2 / PACE BMS Modbus RTU reader service."""
