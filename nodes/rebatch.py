"""Nodes that regroup a list of IMAGE or LATENT batches into batches of a given size (ComfyUI's
comfy_extras/nodes_rebatch.py): each takes the whole list at once and gives a list."""
from __future__ import annotations

import dataclasses

import torch


class _Rebatch:
    INPUT_IS_LIST = True
    OUTPUT_IS_LIST = (True,)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "rebatch"
    API_NODE = False
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_rebatch"


class RebatchImages(_Rebatch):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {}), "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    RETURN_TYPES = ("IMAGE",)
    CATEGORY = "image/batch"
    DISPLAY_NAME = "Rebatch Images"

    def rebatch(self, images, batch_size):
        size = batch_size[0]
        singles = [image[i:i + 1] for image in images for i in range(image.shape[0])]
        return ([torch.cat(singles[i:i + size], dim=0) for i in range(0, len(singles), size)],)


@dataclasses.dataclass
class _Run:
    """Latents of one size waiting to be batched, with their noise masks and batch indices."""
    samples: torch.Tensor
    masks: torch.Tensor
    indices: list

    @classmethod
    def of(cls, latent: dict, offset: int) -> "_Run":
        samples = latent["samples"]
        masks = latent.get("noise_mask")
        if masks is None:  # everything denoised: a mask of ones at pixel size
            masks = torch.ones((samples.shape[0], 1, samples.shape[2] * 8, samples.shape[3] * 8))
        if masks.shape[0] < samples.shape[0]:
            masks = masks.repeat((samples.shape[0] - 1) // masks.shape[0] + 1, 1, 1, 1)[:samples.shape[0]]
        indices = latent.get("batch_index", [offset + i for i in range(samples.shape[0])])
        return cls(samples, masks, list(indices))

    def __len__(self) -> int:
        return self.samples.shape[0]

    def joined(self, other: "_Run") -> "_Run":
        return _Run(torch.cat((self.samples, other.samples)), torch.cat((self.masks, other.masks)),
                    self.indices + other.indices)

    def part(self, start: int, stop: int) -> "_Run":
        return _Run(self.samples[start:stop], self.masks[start:stop], self.indices[start:stop])

    def latent(self) -> dict:
        out = {"samples": self.samples, "noise_mask": self.masks, "batch_index": self.indices}
        if out["noise_mask"].mean() == 1.0:  # a mask that keeps everything is no mask
            del out["noise_mask"]
        return out


class RebatchLatents(_Rebatch):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latents": ("LATENT", {}),
                             "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    RETURN_TYPES = ("LATENT",)
    CATEGORY = "latent/batch"
    DISPLAY_NAME = "Rebatch Latents"

    def rebatch(self, latents, batch_size):
        size, out, current, seen = batch_size[0], [], None, 0
        for latent in latents:
            run = _Run.of(latent, seen)
            seen += len(run.indices)
            if current is None:
                current = run
            elif run.samples.shape[-2:] != current.samples.shape[-2:]:  # another size: a batch of its own
                out.append(current.part(0, size))
                current = run
            else:
                current = current.joined(run)
            if len(current) > size:
                full = len(current) // size
                out += [current.part(i * size, (i + 1) * size) for i in range(full)]
                current = current.part(full * size, len(current)) if full * size < len(current) else None
        if current is not None:
            out.append(current.part(0, size))
        return ([run.latent() for run in out],)


NODE_CLASS_MAPPINGS = {"RebatchImages": RebatchImages, "RebatchLatents": RebatchLatents}
