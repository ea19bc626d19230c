"""Tracking: the one writer of MLflow records, and the home folder the runs share.

Below the stages, above the core. `store` is the MLflow connection (where runs and the registry live, the
experiments, links to the UI); `runs` the typed run object every MLflow run is written through, and the
lifecycle of runs whose process died; `models` the registered versions (log, tag, load); `registry` the
champion protocol (compare-and-set moves of the `champion` alias and their history); `home` the home folder
and its file locks; `locks` the lock of a registry move, across machines that share the servers; `processes`
who owns a run or a checkpoint; `interruptions` the stop signals held while a registry write must not be cut
in two. Nothing above this package imports MLflow.
"""
