"""Pure protocol codecs: frame building/parsing and field tables. No I/O here."""
