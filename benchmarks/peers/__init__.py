"""The peers' video pipelines, each a script for its own virtual environment (none imports
this project, nor is imported by it): compare.py (`python -m benchmarks.peers`) runs them as
subprocesses.

    mediapipe_mesh.py   MediaPipe face mesh 0.10.21, tracking mode (../mpvenv)
    fer_pipeline.py     fer's FER.detect_emotions: a Haar scan every frame, int8 TFLite
                        per face (../fervenv)

Each takes a clip and prints one JSON object: frames, the loop's seconds and frames/s
(decode included, model loading excluded), the start-up seconds, and every frame's boxes.
"""
