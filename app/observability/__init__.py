"""What operators watch: logs, Prometheus metrics and health checks."""
