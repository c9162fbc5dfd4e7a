"""The model server: one app factory, three protocols, Prometheus metrics."""
