"""Whole-stack fault injection: real Mosquitto, simulators and every service as processes."""
