"""The `comfy` package names custom nodes import (see nodes.compat)."""
