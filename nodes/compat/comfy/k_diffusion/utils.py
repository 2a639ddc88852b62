"""`comfy.k_diffusion.utils`: k-diffusion's utilities packs take from ComfyUI; VideoHelperSuite lists images by
`FolderOfImages.IMG_EXTENSIONS`."""
from __future__ import annotations

from pathlib import Path

from PIL import Image
from torch import nn
from torch.utils import data


class FolderOfImages(data.Dataset):
    """The images under `root` (recursively, sorted by path), each as a 1-tuple of `transform(RGB PIL image)`."""

    IMG_EXTENSIONS = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}

    def __init__(self, root, transform=None):
        super().__init__()
        self.root = Path(root)
        self.transform = nn.Identity() if transform is None else transform
        self.paths = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in self.IMG_EXTENSIONS)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key):
        with Image.open(self.paths[key]) as image:
            return (self.transform(image.convert("RGB")),)
