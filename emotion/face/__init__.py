"""How a face is found and described: detection, landmarks, head pose and parts."""
