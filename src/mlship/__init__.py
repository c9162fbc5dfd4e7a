"""mlship: an ML delivery pipeline kept as code."""

__version__ = "0.1.0"
