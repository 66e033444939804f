"""bmslink shared package: schema, topics, MQTT runtime, configuration and protocol codecs."""
