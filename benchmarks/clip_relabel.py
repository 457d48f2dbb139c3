"""CLIP reward relabeling speed: frames/s of ``ClipReward`` batched vs one image at a time, same process, same frames.

Random-weight ViT-B-32 (``open_clip.create_model("ViT-B-32", pretrained=None)``, saved to a temporary checkpoint and
loaded through ``ClipReward``, as a user's local weights would be; the speed does not depend on the weights).
Frames: synthetic relabel-style episodes of uint8 frames (``--size`` square, default 224 like ``FrameSource``), where
a quarter of the steps repeat the previous frame (a robot standing still). Rows:

- naive loop: per frame, open_clip's own PIL preprocess, then ``encode_image`` on one image (what a plain loop over
  a dataset does); the reference;
- ClipReward, one frame per call, cache off / on (on: a repeated frame is not encoded again);
- ClipReward, one call for all frames, batch 64, cache off / on (a frame repeated within one call is encoded once
  either way; the cache also keeps embeddings across calls);
- then other prompts on the same frames (``with_prompts`` shares the warm cache: nothing is encoded);
- ``--more-batch-sizes``: one call, other batch sizes, cache off;
- precision rows (``--rows precision``, the default, or ``all``): one call, batch 64, cache off, with the image
  encoder in ``fp32`` / ``tf32`` / ``bf16`` (``ClipReward(precision=...)``), side by side, each after a warm-up
  call, best of ``--repeats``; with the speed ratio to fp32 and the largest reward difference to fp32. The CPU has
  no TF32 (its tf32 row is fp32); bf16 runs under CPU autocast there.

"frames encoded" counts frames run through the image encoder; "encoded/s" divides it by the time, so the ratio of
that column between the batched and the one-at-a-time rows is the gain of batching alone.

    python benchmarks/clip_relabel.py                              # precision rows: CPU, all cores, 64 frames
    python benchmarks/clip_relabel.py --device cuda --frames 4096 --repeats 3
    python benchmarks/clip_relabel.py --rows batching --threads 1 --frames 128
    python benchmarks/clip_relabel.py --rows batching --device cuda --frames 4096 --threads 16 --more-batch-sizes 256
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

GOAL = ["a robot arm opening a drawer", "an open drawer"]
BASELINE = "a robot arm"


def episodes(frames: int, size: int, episode_len: int = 64, repeat: float = 0.25, seed: int = 0) -> np.ndarray:
    """uint8 ``[frames, size, size, 3]``: episodes of smooth moving patterns plus noise; a ``repeat`` share of the
    steps copies the previous frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for i in range(frames):
        t = i % episode_len
        if t > 0 and rng.random() < repeat:
            out[i] = out[i - 1]
            continue
        phase = (i // episode_len) * 1.7 + t * 0.1
        base = np.stack([np.sin(xx / 9 + phase), np.cos(yy / 7 - phase), np.sin((xx + yy) / 13 + phase)], -1)
        noise = rng.normal(0, 0.1, base.shape)
        out[i] = np.clip((base + noise + 1) * 127.5, 0, 255).astype(np.uint8)
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", choices=("precision", "batching", "all"), default="precision",
                   help="precision: fp32/tf32/bf16 rows (default); batching: batched vs one at a time; all: both")
    p.add_argument("--frames", type=int, default=None, help="default 64 for --rows precision, else 256")
    p.add_argument("--repeats", type=int, default=1, help="precision rows: timed calls each, the best is kept")
    p.add_argument("--size", type=int, default=224, help="frame height and width (preprocessing resizes to 224)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--more-batch-sizes", type=int, nargs="*", default=[], help="extra rows: batch B, cache off")
    p.add_argument("--skip-naive", action="store_true", help="leave out the naive PIL loop")
    args = p.parse_args()
    if args.frames is None:
        args.frames = 64 if args.rows == "precision" else 256

    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.ERROR)  # open_clip's "initialized randomly" warning
    data = episodes(args.frames, args.size)
    unique = len({f.tobytes() for f in data})
    dev = args.device
    header = (f"\n{len(data)} frames {args.size}x{args.size} ({unique} distinct), ViT-B-32 random weights, "
              f"device {dev}, {args.threads} threads, torch {torch.__version__}")
    if args.rows != "batching":
        precision_rows(args, data, header)
    if args.rows != "precision":
        batching_rows(args, data, header)


def _checkpoint(tmp: str) -> Path:
    import open_clip

    checkpoint = Path(tmp) / "vit_b_32_random.pt"
    torch.manual_seed(0)
    torch.save(open_clip.create_model("ViT-B-32", pretrained=None).state_dict(), checkpoint)
    return checkpoint


def precision_rows(args: argparse.Namespace, data: np.ndarray, header: str) -> None:
    """One call over all frames per precision (cache off), each model loaded in turn (one in memory at a time)."""
    from robot_rl.rewards.clip import ClipReward
    from robot_rl.rewards.precision import PRECISIONS

    dev = args.device
    rows: list[tuple[str, float, int, np.ndarray]] = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = _checkpoint(tmp)
        for precision in PRECISIONS:
            reward = ClipReward(checkpoint, "ViT-B-32", goal=GOAL, baseline=BASELINE, device=dev,
                                batch_size=args.batch_size, cache_size=0, precision=precision)
            reward(data[: min(args.batch_size, len(data))])  # warm-up: kernels, autotuning, allocator
            out: list[np.ndarray] = []
            call = functools.partial(lambda r, o: o.append(r(data)), reward, out)
            before = reward.encoded
            best = min(timed(call, dev) for _ in range(max(1, args.repeats)))
            rows.append((precision, best, (reward.encoded - before) // max(1, args.repeats), out[-1]))
            del reward, call
    print(header)
    print(f"\n| image encoder precision (one call, batch {args.batch_size}, cache off) | seconds | frames/s "
          "| encoded/s | speed vs fp32 | max abs reward diff vs fp32 |\n| --- | --- | --- | --- | --- | --- |")
    base_sec, base_rewards = rows[0][1], rows[0][3]
    for precision, sec, encoded, rewards in rows:
        print(f"| {precision} | {sec:.3f} | {len(data) / sec:.1f} | {encoded / sec:.1f} | {base_sec / sec:.2f}x "
              f"| {np.abs(rewards - base_rewards).max():.1e} |")


def batching_rows(args: argparse.Namespace, data: np.ndarray, header: str) -> None:
    """Batched vs one frame at a time, cache on and off, and the naive PIL loop (fp32 encoder)."""
    import open_clip  # noqa: F401
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    from robot_rl.rewards.clip import ClipReward

    dev = args.device
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = _checkpoint(tmp)
        plain = ClipReward(checkpoint, "ViT-B-32", goal=GOAL, baseline=BASELINE, device=dev,
                           batch_size=args.batch_size, cache_size=0, precision="fp32")
        cached = ClipReward(checkpoint, "ViT-B-32", goal=GOAL, baseline=BASELINE, device=dev,
                            batch_size=args.batch_size, precision="fp32")
        more = [ClipReward(checkpoint, "ViT-B-32", goal=GOAL, baseline=BASELINE, device=dev, batch_size=b,
                           cache_size=0, precision="fp32") for b in args.more_batch_sizes]

    warm = data[: min(8, len(data))]
    plain(warm)
    for f in warm[:2]:
        plain(f[None])
    rows: list[tuple[str, float, int]] = []  # (run, seconds, frames run through the image encoder)

    def run(name: str, reward: ClipReward, fn: Callable[[], object]) -> None:
        before = reward.encoded
        rows.append((name, timed(fn, dev), reward.encoded - before))

    if not args.skip_naive:
        model = plain.model
        pil = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)

        def naive() -> None:
            with torch.inference_mode():
                for f in data:
                    model.encode_image(pil(Image.fromarray(f)).unsqueeze(0).to(dev)).cpu()

        rows.append(("naive loop: PIL preprocess + encode_image, 1 image at a time", timed(naive, dev), len(data)))

    out: dict[str, np.ndarray] = {}
    run("ClipReward, 1 frame per call, cache off", plain,
        lambda: out.__setitem__("single", np.concatenate([plain(f[None]) for f in data])))
    cached.clear_cache()
    run("ClipReward, 1 frame per call, cache on", cached,
        lambda: out.__setitem__("single_cache", np.concatenate([cached(f[None]) for f in data])))
    run(f"ClipReward, one call, batch {args.batch_size}, cache off", plain,
        lambda: out.__setitem__("batched", plain(data)))
    cached.clear_cache()
    run(f"ClipReward, one call, batch {args.batch_size}, cache on (default)", cached,
        lambda: out.__setitem__("batched_cache", cached(data)))
    other_prompts = cached.with_prompts("a closed drawer", BASELINE)
    run("ClipReward, other prompts on the same frames (with_prompts, warm cache)", cached, lambda: other_prompts(data))
    for other in more:
        other(warm)
        run(f"ClipReward, one call, batch {other.batch_size}, cache off", other, functools.partial(other, data))

    print(header)
    print("\n| run | seconds | frames/s | frames encoded | encoded/s |\n| --- | --- | --- | --- | --- |")
    rate: dict[str, float] = {}
    enc_rate: dict[str, float] = {}
    for name, sec, encoded in rows:
        rate[name], enc_rate[name] = len(data) / sec, encoded / sec
        print(f"| {name} | {sec:.2f} | {rate[name]:.1f} | {encoded} | {enc_rate[name]:.1f} |")
    one = "ClipReward, 1 frame per call, cache off"
    batch = f"ClipReward, one call, batch {args.batch_size}, cache off"
    default = f"ClipReward, one call, batch {args.batch_size}, cache on (default)"
    print(f"\nbatched / one at a time (frames/s, cache off): {rate[batch] / rate[one]:.2f}x; "
          f"batching alone (encoded/s): {enc_rate[batch] / enc_rate[one]:.2f}x")
    if not args.skip_naive:
        print(f"default (batched + cache) / naive loop (frames/s): {rate[default] / rate[rows[0][0]]:.2f}x")
    single, batched = out["single"], out["batched"]
    cache_diff = max(np.abs(out["single_cache"] - single).max(), np.abs(out["batched_cache"] - batched).max())
    print(f"max |reward difference|: one at a time vs batched {np.abs(single - batched).max():.1e}, "
          f"cache on vs off {cache_diff:.1e}")


if __name__ == "__main__":
    main()
