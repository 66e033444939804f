"""Battery simulator: serves simulated BMSes on ptys and TCP."""
