"""Shipping: the image, its supply chain, the load test, the rollout, the delivery every CI runs."""
