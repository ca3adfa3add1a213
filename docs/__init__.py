"""The docs, importable so that the learner's path can run its chapters and figures:
`python -m docs.learn.make_figures`."""
