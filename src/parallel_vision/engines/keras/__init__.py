"""The Keras layer both Keras 3 engines share (TensorFlow and JAX backends): the run state, the precision policy
and refusals, the epoch check, restore and back-up with their file format, the prediction tail, and the one
way a run ends (`finish`). What really differs stays per engine: tf.data vs the JAX feeder, the strategy
scopes, the cluster environment.

Framework-free at import: no module here imports TensorFlow, JAX or Keras at module level; the engine passes
its modules in (the run state holds them). Not an engine: defines no `ENGINE`, so the registry skips it.

    run.py      KerasRun (the state every step of a run shares), precision policy, device refusals
    model.py    the Keras model and optimiser (LR schedule, accumulation, aligned init)
    backup.py   the epoch-end backup format (KerasBackups: one per engine, its folder and kind)
    resume.py   restore under --resume and the timed epoch-end back_up
    epochs.py   the epoch count / divergence check that makes each epoch's record; the prediction tail
    outputs.py  Complete / Stopped, model.keras written atomically, `finish`
    spec.py     the EngineSpec both Keras engines declare (framework name, backup folder, cluster variables)
"""
