"""hass-discovery: Home Assistant MQTT discovery for every battery, bank and inverter output."""
