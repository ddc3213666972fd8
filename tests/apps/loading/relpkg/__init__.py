"""A plugin package: its plugin module imports its siblings relatively."""
