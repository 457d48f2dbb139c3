"""Scaling out on Ray: the same work as the single-process commands, spread over a local Ray or a cluster.

- ``cluster``: start or join Ray (``--ray-address ADDR|local``), one place for how and for the one-line error.
- ``sweep``: ``robot-rl sweep``, a grid of ``robot-rl train`` / ``pipeline`` jobs as Ray tasks, gathered into one
  table and plot.
- ``relabel``: ``relabel --ray-address``, episodes sharded over Ray tasks, committed by the one writer.
- ``label``: ``label --labeler vlm --ray-address``, VLM queries on Ray actors under one concurrency and rate limit,
  answers stored by the driver.
- ``collect``: ``collect --ray-address``, env slots spread over Ray actors, episodes written by the one writer.

Above ``data``, ``envs`` and ``rewards`` (it runs their functions on workers), below ``cli``. Ray is imported
only inside functions: everything here also runs without it when no address is given.
"""
