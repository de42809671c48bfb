from examples.streaming.server import run

run()
