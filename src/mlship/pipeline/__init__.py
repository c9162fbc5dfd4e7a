"""The pipeline steps DVC runs: data, contract, features, training, evaluation, the model files."""
