"""`comfy_execution`: the graph tools nodes use to expand into subgraphs and to block downstream nodes."""
