"""Batch scoring: files of rows scored with the served model."""
