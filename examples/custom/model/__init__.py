"""The team's own model code: factories that params.yaml names (train.model.kind: custom).

A factory receives `params` (train.model.params) and `features` (the declared columns by
kind) and returns an unfitted estimator or Pipeline that takes those columns as a DataFrame.
Changing anything here retrains: this folder is a dependency of the DVC train stage.
"""
