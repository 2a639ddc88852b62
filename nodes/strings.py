"""String nodes (ComfyUI's comfy_extras/nodes_string.py) and PreviewAny, which shows any value as text."""
from __future__ import annotations

import json
import re


def _text(**options) -> tuple:
    return ("STRING", {"multiline": True, **options})


def _flag(default: bool, **options) -> tuple:
    return ("BOOLEAN", {**options, "default": default})


def _combo(options: list[str]) -> tuple:
    return ("COMBO", {"multiselect": False, "options": options})


def _flags(case_insensitive: bool, multiline: bool, dotall: bool) -> int:
    return (re.IGNORECASE if case_insensitive else 0) | (re.MULTILINE if multiline else 0) | \
        (re.DOTALL if dotall else 0)


class _StringNode:
    RETURN_TYPES = ("STRING",)
    OUTPUT_TOOLTIPS = (None,)
    FUNCTION = "run"
    CATEGORY = "utils/string"
    API_NODE = False
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_string"


class StringConcatenate(_StringNode):
    DISPLAY_NAME = "Concatenate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string_a": _text(), "string_b": _text(),
                             "delimiter": ("STRING", {"default": "", "multiline": False})}}

    def run(self, string_a, string_b, delimiter):
        return (delimiter.join((string_a, string_b)),)


class StringSubstring(_StringNode):
    DISPLAY_NAME = "Substring"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "start": ("INT", {}), "end": ("INT", {})}}

    def run(self, string, start, end):
        return (string[start:end],)


class StringLength(_StringNode):
    DISPLAY_NAME = "Length"
    RETURN_TYPES = ("INT",)
    RETURN_NAMES = ("length",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text()}}

    def run(self, string):
        return (len(string),)


class _StringMode(_StringNode):
    """The string through the str method its `mode` names (unchanged for an unknown mode)."""
    MODES: dict = {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "mode": _combo(list(cls.MODES))}}

    def run(self, string, mode):
        return (self.MODES.get(mode, str)(string),)


class CaseConverter(_StringMode):
    DISPLAY_NAME = "Case Converter"
    MODES = {"UPPERCASE": str.upper, "lowercase": str.lower, "Capitalize": str.capitalize, "Title Case": str.title}


class StringTrim(_StringMode):
    DISPLAY_NAME = "Trim"
    MODES = {"Both": str.strip, "Left": str.lstrip, "Right": str.rstrip}


class StringReplace(_StringNode):
    DISPLAY_NAME = "Replace"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "find": _text(), "replace": _text()}}

    def run(self, string, find, replace):
        return (string.replace(find, replace),)


class StringContains(_StringNode):
    DISPLAY_NAME = "Contains"
    RETURN_TYPES = ("BOOLEAN",)
    RETURN_NAMES = ("contains",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "substring": _text(), "case_sensitive": _flag(True)}}

    def run(self, string, substring, case_sensitive):
        if not case_sensitive:
            string, substring = string.lower(), substring.lower()
        return (substring in string,)


class StringCompare(_StringNode):
    DISPLAY_NAME = "Compare"
    RETURN_TYPES = ("BOOLEAN",)
    MODES = {"Starts With": str.startswith, "Ends With": str.endswith, "Equal": str.__eq__}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string_a": _text(), "string_b": _text(), "mode": _combo(list(cls.MODES)),
                             "case_sensitive": _flag(True)}}

    def run(self, string_a, string_b, mode, case_sensitive):
        if not case_sensitive:
            string_a, string_b = string_a.lower(), string_b.lower()
        return (self.MODES[mode](string_a, string_b),)


class RegexMatch(_StringNode):
    DISPLAY_NAME = "Regex Match"
    RETURN_TYPES = ("BOOLEAN",)
    RETURN_NAMES = ("matches",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "regex_pattern": _text(), "case_insensitive": _flag(True),
                             "multiline": _flag(False), "dotall": _flag(False)}}

    def run(self, string, regex_pattern, case_insensitive, multiline, dotall):
        try:
            return (re.search(regex_pattern, string, _flags(case_insensitive, multiline, dotall)) is not None,)
        except re.error:  # an invalid pattern matches nothing
            return (False,)


class RegexExtract(_StringNode):
    DISPLAY_NAME = "Regex Extract"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "regex_pattern": _text(),
                             "mode": _combo(["First Match", "All Matches", "First Group", "All Groups"]),
                             "case_insensitive": _flag(True), "multiline": _flag(False), "dotall": _flag(False),
                             "group_index": ("INT", {"default": 1, "min": 0, "max": 100})}}

    def run(self, string, regex_pattern, mode, case_insensitive, multiline, dotall, group_index):
        flags = _flags(case_insensitive, multiline, dotall)
        try:
            return ("\n".join(self._extract(string, regex_pattern, mode, flags, group_index)),)
        except re.error:  # an invalid pattern extracts nothing
            return ("",)

    @staticmethod
    def _extract(string, pattern, mode, flags, group):
        if mode == "First Match":
            match = re.search(pattern, string, flags)
            return [match.group(0)] if match else []
        if mode == "All Matches":  # with groups in the pattern, the first group of each match
            return [m[0] if isinstance(m, tuple) else m for m in re.findall(pattern, string, flags)]
        if mode == "First Group":
            match = re.search(pattern, string, flags)
            return [match.group(group)] if match and len(match.groups()) >= group else []
        if mode == "All Groups":
            return [m.group(group) for m in re.finditer(pattern, string, flags)
                    if m.groups() and len(m.groups()) >= group]
        return []


class RegexReplace(_StringNode):
    DISPLAY_NAME = "Regex Replace"
    DESCRIPTION = "Find and replace text using regex patterns."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"string": _text(), "regex_pattern": _text(), "replace": _text()},
                "optional": {
                    "case_insensitive": _flag(True), "multiline": _flag(False),
                    "dotall": _flag(False, tooltip="When enabled, the dot (.) character will match any character "
                                                   "including newline characters. When disabled, dots won't match "
                                                   "newlines."),
                    "count": ("INT", {"tooltip": "Maximum number of replacements to make. Set to 0 to replace all "
                                                 "occurrences (default). Set to 1 to replace only the first match, 2 "
                                                 "for the first two matches, etc.",
                                      "default": 0, "min": 0, "max": 100})}}

    def run(self, string, regex_pattern, replace, case_insensitive=True, multiline=False, dotall=False, count=0):
        return (re.sub(regex_pattern, replace, string, count=count,
                       flags=_flags(case_insensitive, multiline, dotall)),)


class PreviewAny:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"source": ("*", {})}}

    RETURN_TYPES = ()
    FUNCTION = "main"
    OUTPUT_NODE = True
    CATEGORY = "utils"
    RELATIVE_PYTHON_MODULE = "comfy_extras.nodes_preview_any"

    def main(self, source=None):
        return {"ui": {"text": (preview_text(source),)}}


def preview_text(value) -> str:
    """A value as PreviewAny shows it: strings as they are, numbers and booleans by str, others as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    if value is None:
        return "None"
    try:
        return json.dumps(value)
    except Exception:
        try:
            return str(value)
        except Exception:
            return "source exists, but could not be serialized."


NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in (
    StringConcatenate, StringSubstring, StringLength, CaseConverter, StringTrim, StringReplace, StringContains,
    StringCompare, RegexMatch, RegexExtract, RegexReplace, PreviewAny)}
NODE_DISPLAY_NAME_MAPPINGS = {"PreviewAny": "Preview Any"}
