"""ComfyUI's prompt emphasis syntax: ``(text)``, ``(text:1.3)`` and escaped ``\\(`` ``\\)``.

ComfyUI's rules, which differ from A1111's:
- ``(text)`` multiplies the surrounding weight by 1.1; nesting compounds.
- ``(text:w)`` *replaces* the weight with ``w`` (it does not multiply the surrounding weight).
- Square brackets are ordinary text; there is no de-emphasis syntax.
- ``\\(`` and ``\\)`` are literal parentheses (the backslash is dropped).
- Unbalanced parentheses stay in the text.
"""

from __future__ import annotations

from dataclasses import dataclass

EMPHASIS = 1.1

# Private-use stand-ins keep escaped parentheses out of the bracket matching.
_ESCAPES = {"\\(": "\0\2", "\\)": "\0\1"}


@dataclass(frozen=True)
class WeightedText:
    text: str
    weight: float


def split_groups(text: str) -> list[str]:
    """Split into plain runs and top-level ``(...)`` groups, tracking depth like ComfyUI (which may go negative)."""
    parts = []
    current = ""
    depth = 0
    for char in text:
        if char == "(":
            if depth == 0 and current:
                parts.append(current)
                current = ""
            current += char
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                parts.append(current + char)
                current = ""
            else:
                current += char
        else:
            current += char
    if current:
        parts.append(current)
    return parts


def _group_weight(inner: str, weight: float) -> tuple[str, float]:
    """Body and weight of a ``(...)`` group; a trailing ``:number`` sets the weight outright."""
    colon = inner.rfind(":")
    if colon > 0:
        try:
            return inner[:colon], float(inner[colon + 1 :])
        except ValueError:
            pass
    return inner, weight * EMPHASIS


def _weigh(text: str, weight: float) -> list[WeightedText]:
    out = []
    for part in split_groups(text):
        if len(part) >= 2 and part[0] == "(" and part[-1] == ")":
            out.extend(_weigh(*_group_weight(part[1:-1], weight)))
        else:
            out.append(WeightedText(part, weight))
    return out


def _protect(text: str) -> str:
    for escaped, stand_in in _ESCAPES.items():
        text = text.replace(escaped, stand_in)
    return text


def _restore(text: str) -> str:
    for escaped, stand_in in _ESCAPES.items():
        text = text.replace(stand_in, escaped[1])
    return text


def parse_prompt_weights(text: str, parse_weights: bool = True) -> list[WeightedText]:
    """Prompt -> runs of text with their weights, in order. ``parse_weights=False`` keeps the text whole at 1.0."""
    protected = _protect(text)
    runs = _weigh(protected, 1.0) if parse_weights else [WeightedText(protected, 1.0)]
    return [WeightedText(_restore(run.text), run.weight) for run in runs]
