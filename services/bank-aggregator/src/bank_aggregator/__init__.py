"""bank-aggregator: one virtual BMS per bank, built from the ``bms/+/state`` of its members."""
