"""forge-plugin-metrics: /health probes and Prometheus /metrics for every forge endpoint."""
