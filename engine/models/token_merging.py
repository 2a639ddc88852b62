"""Token merging for Stable Diffusion (Bolya & Hoffman 2023, dbolya/tomesd, as ComfyUI's TomePatchModel applies
it): at the UNet's finest level, self-attention runs on fewer queries. The tokens are split into destinations (one
per 2x2 cell, drawn at random from torch's global generator as ComfyUI draws it) and sources; the `ratio` of all
tokens that are sources most similar (cosine) to some destination are averaged into it. The attention output is
spread back: each merged source takes its destination's output.
"""
from __future__ import annotations

import math

import torch

STRIDE = 2  # destinations: one token in each STRIDE x STRIDE cell


def _unchanged(x: torch.Tensor) -> torch.Tensor:
    return x


def _destination_first_order(h: int, w: int, device) -> torch.Tensor:
    """[1, h * w, 1] token indices, the destinations first: one random token of each whole cell."""
    cells_y, cells_x = h // STRIDE, w // STRIDE
    pick = torch.randint(STRIDE * STRIDE, size=(cells_y, cells_x, 1), device=device)
    marks = torch.zeros(cells_y, cells_x, STRIDE * STRIDE, device=device, dtype=torch.int64)
    marks.scatter_(dim=2, index=pick, src=-torch.ones_like(pick, dtype=pick.dtype))
    marks = marks.view(cells_y, cells_x, STRIDE, STRIDE).transpose(1, 2).reshape(cells_y * STRIDE, cells_x * STRIDE)
    if cells_y * STRIDE < h or cells_x * STRIDE < w:  # the rows / columns past the last whole cell are sources
        whole = torch.zeros(h, w, device=device, dtype=torch.int64)
        whole[:cells_y * STRIDE, :cells_x * STRIDE] = marks
        marks = whole
    return marks.reshape(1, -1, 1).argsort(dim=1)  # destinations (-1) before sources (0)


def bipartite_merge(metric: torch.Tensor, w: int, h: int, r: int):
    """(merge, unmerge) for [B, N, C] tokens of an h x w image merging `r` sources, chosen by `metric`."""
    batch, tokens, _ = metric.shape
    if r <= 0 or w == 1 or h == 1:
        return _unchanged, _unchanged
    with torch.no_grad():
        order = _destination_first_order(h, w, metric.device)
        destinations = (h // STRIDE) * (w // STRIDE)
        src_ids, dst_ids = order[:, destinations:, :], order[:, :destinations, :]

        def split(x):
            c = x.shape[-1]
            return (torch.gather(x, dim=1, index=src_ids.expand(batch, tokens - destinations, c)),
                    torch.gather(x, dim=1, index=dst_ids.expand(batch, destinations, c)))

        sources, targets = split(metric / metric.norm(dim=-1, keepdim=True))
        r = min(sources.shape[1], r)
        best, best_target = (sources @ targets.transpose(-1, -2)).max(dim=-1)
        ranked = best.argsort(dim=-1, descending=True)[..., None]
        kept, merged = ranked[..., r:, :], ranked[..., :r, :]  # indices among the sources
        merged_into = torch.gather(best_target[..., None], dim=-2, index=merged)

    def merge(x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        src, dst = split(x)
        n, count, c = src.shape
        unmerged = torch.gather(src, dim=-2, index=kept.expand(n, count - r, c))
        src = torch.gather(src, dim=-2, index=merged.expand(n, r, c))
        return torch.cat([unmerged, dst.scatter_reduce(-2, merged_into.expand(n, r, c), src, reduce=mode)], dim=1)

    def unmerge(x: torch.Tensor) -> torch.Tensor:
        count = kept.shape[1]
        unmerged, dst = x[..., :count, :], x[..., count:, :]
        c = unmerged.shape[-1]
        src_of = src_ids.expand(batch, src_ids.shape[1], 1)
        out = torch.zeros(batch, tokens, c, device=x.device, dtype=x.dtype)
        out.scatter_(dim=-2, index=dst_ids.expand(batch, destinations, c), src=dst)
        out.scatter_(dim=-2, index=torch.gather(src_of, dim=1, index=kept).expand(batch, count, c), src=unmerged)
        out.scatter_(dim=-2, index=torch.gather(src_of, dim=1, index=merged).expand(batch, r, c),
                     src=torch.gather(dst, dim=-2, index=merged_into.expand(batch, r, c)))
        return out

    return merge, unmerge


def merging_for(x: torch.Tensor, ratio: float, original_shape) -> tuple:
    """(merge, unmerge) for the [B, N, C] tokens `x` of a UNet whose input is `original_shape`: only at the finest
    level (N the latent's pixel count), merging int(N * ratio) tokens."""
    _, _, height, width = original_shape
    downsample = int(math.ceil(math.sqrt(height * width // x.shape[1])))
    if downsample > 1:
        return _unchanged, _unchanged
    return bipartite_merge(x, int(math.ceil(width / downsample)), int(math.ceil(height / downsample)),
                           int(x.shape[1] * ratio))


class TokenMerging:
    """The attn1_patch / attn1_output_patch pair of one TomePatchModel node."""

    def __init__(self, ratio: float):
        self.ratio = ratio
        self.unmerge = _unchanged

    def merge(self, q, k, v, extra_options):
        merge, self.unmerge = merging_for(q, self.ratio, extra_options["original_shape"])
        return merge(q), k, v

    def restore(self, out, extra_options):
        return self.unmerge(out)
