"""Transfer evaluation (000, 001, 002, 004): protocols, metrics, LogME, source search."""
