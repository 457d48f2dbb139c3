"""Scripted LLM replies for the reward-search tests (the replay server plays the LLM)."""

from __future__ import annotations

from typing import Any

GOOD = '''Here is a dense reward: reach the handle, then pull it to the goal.

```python
def compute_reward(obs, action):
    reach = -torch.linalg.vector_norm(obs["hand_pos"] - obs["obj_pos"], dim=-1)
    pull = -5.0 * torch.linalg.vector_norm(obs["obj_pos"] - obs["goal_pos"], dim=-1)
    return reach + pull, {"reach": reach, "pull": pull}
```

The pull term dominates once the hand holds the handle.'''

GOOD_V2 = '''```python
def compute_reward(obs, action):
    reach = 1.0 - torch.tanh(10.0 * torch.linalg.vector_norm(obs["hand_pos"] - obs["obj_pos"], dim=-1))
    pull = 2.0 * (1.0 - torch.tanh(5.0 * torch.linalg.vector_norm(obs["obj_pos"] - obs["goal_pos"], dim=-1)))
    return reach + pull, {"reach": reach, "pull": pull}
```'''

MALICIOUS = '''```python
def compute_reward(obs, action):
    subclasses = ().__class__.__bases__[0].__subclasses__()
    return obs["state"][:, 0] * 0, {"x": obs["state"][:, 0] * 0}
```'''

RUNTIME_ERROR = '''```python
def compute_reward(obs, action):
    missing = obs["handle_angle"]
    return missing[:, 0], {"angle": missing[:, 0]}
```'''

NO_CODE = "I would reward the robot for opening the drawer, weighted by how far the handle moved."

TWO_FUNCTIONS = '''```python
def helper(x):
    return -x

def compute_reward(obs, action):
    r = helper(obs["state"][:, 0])
    return r, {"r": r}
```'''

SYNTAX_ERROR = '''```python
def compute_reward(obs, action):
    r = -torch.linalg.vector_norm(obs["hand_pos"] - obs["obj_pos"], dim=-1
    return r, {"r": r}
```'''

REACH_TRUE = '''```python
def compute_reward(obs, action):
    distance = torch.linalg.vector_norm(obs["state"], dim=-1)
    return -distance, {"distance": -distance}
```'''

REACH_NEGATED = '''```python
def compute_reward(obs, action):
    distance = torch.linalg.vector_norm(obs["state"], dim=-1)
    return distance, {"distance": distance}
```'''


def sample_index(body: dict[str, Any], samples: int) -> int:
    """Which sample of its iteration a request is (the search sends seed = seed * 10007 + it * 1009 + i)."""
    return int(body["seed"]) % 1009 % samples
