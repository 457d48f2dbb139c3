"""Building blocks shared by learners and reward models: networks, atomic checkpoints, normalizers.

Depends on ``core`` only (and torch); ``rl`` (algorithms) and ``rewards`` (reward models, success classifiers)
both build on it, so neither needs the other.
"""
