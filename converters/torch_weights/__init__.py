"""Ultralytics ``.pt`` interop: name/layout mapping between torch state dicts and Flax variables."""
