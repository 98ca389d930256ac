"""`pvision explain`: attribution maps of a run's saved model and how faithful they are (docs/explain.md).

    sample.py        the seeded, class-stratified sample of the test set (the same images for every run)
    faithfulness.py  deletion and insertion curves (RISE) and their areas, the randomised-model check (numpy/scipy)
    attribution.py   the methods in numpy over a framework's gradient callables (the Keras engines' maps)
    child.py         the body of an explain child built on attribution.py: maps, curves, the randomised model
    run.py           the parent side: the run folder, the sample, the engine's explain child, explain.json/.npz

`sample`, `faithfulness`, `attribution` and `child` are framework-free basics the engines' explain children use;
`run` is the parent side (it starts the child through the launcher), so the framework is imported only in that
child.
"""
