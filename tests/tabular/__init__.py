"""Tests of ember.tabular (a package, so its module names do not clash with tests/learner/test_learner.py)."""
