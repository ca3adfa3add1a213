"""The learning path: chapters (NN-title.md), their figures, the exercises and checkers."""
