"""What to build (params.yaml -> Params, in params.py) and where it runs (the environment
-> Settings, in settings.py); both strict and frozen."""
