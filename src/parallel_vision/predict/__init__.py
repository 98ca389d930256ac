"""`pvision predict`: a run's saved model on a user's image files, framework-free in this process.

    images.py   decode (Pillow: EXIF orientation, alpha, channels) and preprocess to the dataset's shape and
                polarity, every step recorded (numpy, Pillow, scipy only)
    model.py    the run folder (config, model file, classes, normalisation) and its logits, computed by the
                engine's predict module in a child process of its own (EngineSpec.predict)
    output.py   the predictions as a table, JSON or CSV

The framework is imported only in that child, so torch and TensorFlow never share a process (docs/predict.md).
"""
