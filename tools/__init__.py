"""Developer and CI commands: the offline plan, the mock harness, test doubles."""
