"""Helpers of the JSON decoder (``stream.events``): nesting depth, field mapping."""
