"""One router per protocol, each a function of the data plane: probes and model information,
the plain prediction API, MLflow's scoring protocol, the Open Inference Protocol V2."""
