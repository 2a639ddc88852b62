"""`comfy_api.latest.ui`: what a V3 node shows in the frontend, given as `io.NodeOutput(..., ui=...)`. Images
are written as comfyd's SaveImage / PreviewImage write them."""
from __future__ import annotations

from nodes import image as image_nodes

from ._io import ComfyNode, FolderType, _UIOutput


class SavedResult(dict):
    """One file the frontend can fetch through /view: {"filename", "subfolder", "type"}."""

    def __init__(self, filename: str, subfolder: str, type: FolderType):
        super().__init__(filename=filename, subfolder=subfolder, type=FolderType(type).value)

    @property
    def filename(self) -> str:
        return self["filename"]

    @property
    def subfolder(self) -> str:
        return self["subfolder"]

    @property
    def type(self) -> FolderType:
        return FolderType(self["type"])


class SavedImages(_UIOutput):
    def __init__(self, results: list[SavedResult], is_animated: bool = False):
        self.results = results
        self.is_animated = is_animated

    def as_dict(self) -> dict:
        return {"images": self.results, **({"animated": (True,)} if self.is_animated else {})}


class SavedAudios(_UIOutput):
    def __init__(self, results: list[SavedResult]):
        self.results = results

    def as_dict(self) -> dict:
        return {"audio": self.results}


class ImageSaveHelper:
    @staticmethod
    def save_images(images, filename_prefix: str, folder_type: FolderType, cls: type[ComfyNode] | None,
                    compress_level: int = 4) -> list[SavedResult]:
        """The batch as PNG files, with the prompt of the node `cls` (its hidden values) in their metadata."""
        hidden = cls.hidden if cls is not None else None
        saved = image_nodes.save_png_batch(images, FolderType(folder_type).value, filename_prefix,
                                           hidden.prompt if hidden else None,
                                           hidden.extra_pnginfo if hidden else None, compress_level)
        return [SavedResult(entry["filename"], entry["subfolder"], entry["type"]) for entry in saved]

    @staticmethod
    def get_save_images_ui(images, filename_prefix: str, cls: type[ComfyNode] | None,
                           compress_level: int = 4) -> SavedImages:
        return SavedImages(ImageSaveHelper.save_images(images, filename_prefix, FolderType.output, cls,
                                                       compress_level))


class PreviewImage(_UIOutput):
    """The images as temporary previews."""

    def __init__(self, image, animated: bool = False, cls: type[ComfyNode] | None = None, **kwargs):
        prefix = "ComfyUI" + image_nodes.PreviewImage().prefix_suffix()
        self.values = ImageSaveHelper.save_images(image, prefix, FolderType.temp, cls, compress_level=1)
        self.animated = animated

    def as_dict(self) -> dict:
        return {"images": self.values, "animated": (self.animated,)}


class PreviewMask(PreviewImage):
    def __init__(self, mask, animated: bool = False, cls: type[ComfyNode] | None = None, **kwargs):
        gray = mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1).expand(-1, -1, -1, 3)
        super().__init__(gray, animated, cls, **kwargs)


class PreviewVideo(_UIOutput):
    def __init__(self, values: list, **kwargs):
        self.values = values

    def as_dict(self) -> dict:
        return {"images": self.values, "animated": (True,)}


class PreviewUI3D(_UIOutput):
    def __init__(self, model_file, camera_info, **kwargs):
        self.model_file = model_file
        self.camera_info = camera_info

    def as_dict(self) -> dict:
        return {"result": [self.model_file, self.camera_info]}


class PreviewText(_UIOutput):
    def __init__(self, value: str, **kwargs):
        self.value = value

    def as_dict(self) -> dict:
        return {"text": (self.value,)}
