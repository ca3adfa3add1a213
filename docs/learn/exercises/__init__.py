"""Exercises: write the missing piece, then `python -m docs.learn.exercises.check NAME`."""
