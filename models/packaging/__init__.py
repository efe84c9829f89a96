"""Carrying a model out of training: the MLflow pyfunc bundle, where MLflow lives (tracking), the
registry with its promotion gate, and loading a scorer back from any of them.
"""
