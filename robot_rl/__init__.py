"""robot_rl: unlabeled robot data plus one task sentence in, a working policy out."""

__version__ = "0.1.0"
