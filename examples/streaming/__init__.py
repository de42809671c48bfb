"""Large binary messages between a browser and fastws: python -m examples.streaming."""
