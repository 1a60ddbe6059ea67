"""forge-plugin-metal: the ``metal`` compute backend on torch MPS."""
