"""`comfy.taesd`: the Tiny AutoEncoder building blocks."""
