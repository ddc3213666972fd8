"""The stage names, imported by plugin.py with a relative import."""

STAGE = "RELATIVE_STAGE"
