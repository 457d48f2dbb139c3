"""Local USD assets for Isaac Lab tasks: swap the files Isaac Lab fetches from NVIDIA's servers for local copies.

Every Isaac Lab task names its USD files by URL (``usd_path`` of a spawner config, e.g.
``https://.../IsaacLab/Robots/Classic/Cartpole/cartpole.usd``). ``localize(cfg, DIR)`` points each one at
``DIR/<file name>`` (or the same stem with ``.usda`` / ``.usdc`` / ``.usd``). A remote file with no local copy is a
one-line error naming the file to put in ``DIR``, except for entities the task marks as looks only (Cartpole's
ground plane: the cart runs on a rail fixed to the world), which are left out of the scene instead.

``python -m robot_rl.envs.isaaclab.assets DIR`` writes ``DIR/cartpole.usda``: the cartpole the ``newton`` wheel
ships (``newton/examples/assets/cartpole_single_pendulum.usda``, a flattened copy of Isaac Lab's, same joint names)
with its ``defaultPrim`` corrected from ``"cartPole"`` to the prim it has, ``cartpole``.
No Isaac Lab import here: this runs on config objects (dataclasses) only.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

LOOKS_ONLY: dict[str, tuple[str, ...]] = {
    "Isaac-Cartpole-Direct": ("scene.ground",),
    "Isaac-Cartpole": ("scene.ground",),
}
"""Task id -> config paths of entities that only make the scene look right; dropped when their USD is not local."""

NEWTON_CARTPOLE = "examples/assets/cartpole_single_pendulum.usda"
"""The cartpole in the ``newton`` wheel, relative to the ``newton`` package."""


def is_remote(path: str) -> bool:
    """Whether Isaac Lab would fetch ``path`` over the network (a URL: https://, omniverse://, ...)."""
    return "://" in path


def local_copy(remote: str, assets_dir: Path) -> Path | None:
    """``DIR/<file name>`` of ``remote``, else ``DIR/<stem>.usda|.usdc|.usd``; ``None`` if none exists."""
    name = remote.rstrip("/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0]
    for candidate in (name, f"{stem}.usda", f"{stem}.usdc", f"{stem}.usd"):
        if (assets_dir / candidate).is_file():
            return (assets_dir / candidate).resolve()
    return None


def _children(node: Any) -> list[tuple[str, Any]]:
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return [(f.name, getattr(node, f.name, None)) for f in dataclasses.fields(node)]
    if isinstance(node, dict):
        return [(str(k), v) for k, v in node.items()]
    if isinstance(node, list | tuple):
        return [(str(i), v) for i, v in enumerate(node)]
    return []


def remote_usd_paths(cfg: Any) -> list[tuple[str, Any, str]]:
    """Every ``usd_path`` in the config tree that is remote: ``(dotted path of its owner, owner, url)``."""
    found: list[tuple[str, Any, str]] = []
    seen: set[int] = set()

    def walk(node: Any, path: str) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        for key, child in _children(node):
            if key == "usd_path" and isinstance(child, str) and is_remote(child):
                found.append((path, node, child))
            elif child is not None and not isinstance(child, str | int | float | bool):
                walk(child, f"{path}.{key}" if path else key)

    walk(cfg, "")
    return found


def _entity_of(owner_path: str, droppable: tuple[str, ...]) -> str | None:
    for entity in droppable:
        if owner_path == entity or owner_path.startswith(entity + "."):
            return entity
    return None


def localize(cfg: Any, assets_dir: Path, task: str) -> dict[str, str]:
    """Point every remote ``usd_path`` in ``cfg`` (an Isaac Lab env config) at its copy in ``assets_dir``.

    Returns ``{url: local path, or "dropped <entity>"}``. Raises ``ValueError`` (one line) when ``assets_dir`` is
    not a folder or a file that is not looks-only has no local copy.
    """
    assets_dir = Path(assets_dir)
    if not assets_dir.is_dir():
        raise ValueError(f"Isaac Lab assets folder {assets_dir} does not exist (ROBOT_RL_ISAACLAB_ASSETS)")
    done: dict[str, str] = {}
    missing: list[str] = []
    droppable = LOOKS_ONLY.get(task, ())
    for owner_path, owner, url in remote_usd_paths(cfg):
        local = local_copy(url, assets_dir)
        if local is not None:
            owner.usd_path = str(local)
            done[url] = str(local)
            continue
        entity = _entity_of(owner_path, droppable)
        if entity is None:
            missing.append(f"{url.rsplit('/', 1)[-1]} (for {owner_path})")
            continue
        parent_path, _, attr = entity.rpartition(".")
        parent = cfg
        for part in parent_path.split(".") if parent_path else ():
            parent = getattr(parent, part)
        setattr(parent, attr, None)
        done[url] = f"dropped {entity}"
    if missing:
        raise ValueError(f"{task}: no local copy in {assets_dir} of {', '.join(missing)}; put the file(s) there "
                         "(any of .usd/.usda/.usdc with that stem), or unset ROBOT_RL_ISAACLAB_ASSETS to download")
    return done


def write_newton_cartpole(assets_dir: Path) -> Path:
    """Write ``assets_dir/cartpole.usda`` from the ``newton`` wheel's cartpole, ``defaultPrim`` corrected."""
    import newton

    source = Path(newton.__file__).parent / NEWTON_CARTPOLE
    text = source.read_text(encoding="utf-8")
    if 'defaultPrim = "cartPole"' in text:
        text = text.replace('defaultPrim = "cartPole"', 'defaultPrim = "cartpole"', 1)
    if 'def Xform "cartpole"' not in text or 'defaultPrim = "cartpole"' not in text:
        raise ValueError(f"{source}: expected a prim 'cartpole' named as defaultPrim; newton's cartpole changed")
    assets_dir.mkdir(parents=True, exist_ok=True)
    out = assets_dir / "cartpole.usda"
    out.write_text(text, encoding="utf-8")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m robot_rl.envs.isaaclab.assets DIR   (writes DIR/cartpole.usda from newton)")
    print(f"[isaaclab assets] wrote {write_newton_cartpole(Path(sys.argv[1]))}")
