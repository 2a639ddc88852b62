"""`comfy_execution.graph_utils`: GraphBuilder for node expansion (see engine.graph)."""
from engine.graph import GraphBuilder, add_graph_prefix, is_link  # noqa: F401 (re-exported)
from engine.graph import GraphNode as Node  # noqa: F401
