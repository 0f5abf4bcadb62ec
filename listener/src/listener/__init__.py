"""The langsmith-dataplane listener: control-plane client, emulator and (later) the rollout loop."""
