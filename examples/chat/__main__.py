from examples.chat.server import run

run()
