"""can-reader: one Pylontech LV CAN BMS per CAN interface, published to MQTT."""
