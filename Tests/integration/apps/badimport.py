"""A module that fails at import time."""
raise RuntimeError("apus-test-marker-import-failed")
