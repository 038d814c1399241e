"""Sound in and out of the models: rings, devices, files.

The one statement of the format every model-side array has: mono float32 at Mimi's rate, cut into
frames of one model step.
"""

MODEL_RATE = 24_000  # Mimi's sample rate
FRAME = 1920  # samples per frame: 80 ms at 24 kHz, one Mimi frame, one model step
FRAME_S = FRAME / MODEL_RATE  # 0.08: seconds per frame
