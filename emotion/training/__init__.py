"""How the weights were made: teacher labels, training loops and their data."""
