"""forge-plugin-cpu: the ``cpu`` compute backend (see :mod:`forge_plugin_cpu.backend`)."""
