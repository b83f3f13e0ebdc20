"""The test suite (a package, so that `python -m twisted.trial tests` finds it)."""
