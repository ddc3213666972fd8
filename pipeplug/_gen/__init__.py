"""Generated subpackage (from proto/): do not edit; regenerate with `python -m pipeplug._gen_tool`."""
