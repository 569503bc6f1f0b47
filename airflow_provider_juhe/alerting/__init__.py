"""The notifier's memory: alert episodes, repeat intervals and per-number caps, kept in Variables."""
