"""A chat with rooms on fastws channels: python -m examples.chat."""
