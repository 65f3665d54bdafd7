"""What every facerestore training run shares, whichever recipe: batches of consecutive frame
pairs, the temporal term, the step itself, the loss log every hundred steps, and the weights and
record written atomically. `models.training` (the first x4 stage) and `models.training_v2` (every
later recipe) differ in their data and their losses' weights, not in how they fit."""

from __future__ import annotations

import io
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

from facerestore.models.weights import sha256_file, write_atomically

LOG_EVERY = 100  # steps between loss log entries


def frame_pairs(array: np.ndarray, device: str):
    """(batch, 2, H, W, C) float32 -> (2 x batch, C, H, W): both frames of every pair in one pass."""
    import torch

    return torch.from_numpy(array.reshape(-1, *array.shape[2:])).permute(0, 3, 1, 2).to(device)


def temporal_term(out, target, batch: int):
    """The change between a pair's two outputs must be the change between its two targets (L1):
    what keeps a restorer from flickering."""
    import torch

    out_pairs, target_pairs = out.view(batch, 2, *out.shape[1:]), target.view(batch, 2, *target.shape[1:])
    return torch.nn.functional.l1_loss(out_pairs[:, 1] - out_pairs[:, 0], target_pairs[:, 1] - target_pairs[:, 0])


def step(net, optimiser, schedule, loss, clip_norm: float | None = None) -> None:
    """One optimiser step on `loss` (gradients clipped to `clip_norm` where given)."""
    import torch

    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    if clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip_norm)
    optimiser.step()
    schedule.step()


class LossLog:
    """Each loss term summed over LOG_EVERY steps, then one entry (their means) in `entries`."""

    def __init__(self, terms: tuple[str, ...], entries: list | None = None) -> None:
        self.terms, self.entries = terms, entries if entries is not None else []
        self.window = dict.fromkeys(terms, 0.0)

    def add(self, **values) -> None:
        for name, value in values.items():
            self.window[name] += float(value.item() if hasattr(value, "item") else value)

    def entry_at(self, step_number: int, last: int, seconds: float) -> dict | None:
        """The entry for this step when one is due (every LOG_EVERY steps and the last), else None."""
        if step_number % LOG_EVERY and step_number != last:
            return None
        n = LOG_EVERY if step_number % LOG_EVERY == 0 else step_number % LOG_EVERY
        entry = {"step": step_number, **{k: v / n for k, v in self.window.items()}, "seconds": round(seconds)}
        self.entries.append(entry)
        self.window = dict.fromkeys(self.terms, 0.0)
        return entry


def save_weights(net, path: Path) -> str:
    """The network's weights as float32 tensors, written atomically; their sha256."""
    import torch

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().float().contiguous() for k, v in net.state_dict().items()}, buffer)
    write_atomically(path, buffer.getvalue())
    return sha256_file(path)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def write_record(path: Path, record: dict) -> dict:
    write_atomically(path, (json.dumps(record, indent=2) + "\n").encode())
    return record

