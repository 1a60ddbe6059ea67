"""forge-plugin-scheduler: the ``continuous`` scheduler."""
