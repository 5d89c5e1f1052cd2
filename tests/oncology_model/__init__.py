"""Tests of the model package: code, data and model behaviour."""
