"""emotion: real-time face emotion recognition on the nnlite CNN engine.

The app layer stays thin: it wires FER2013 data, preprocessing, models, face detection,
tracking and display together. All maths lives in `nnlite`.
"""

__version__ = "0.1.0"
