"""Pylontech LV RS485 reader service."""
