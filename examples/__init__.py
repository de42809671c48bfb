"""Runnable demos of fastws with a browser page each (run from the repository root):

python -m examples.streaming   large binary messages from and to the browser, with MB/s
python -m examples.chat        a chat with rooms on fastws' channels

Each prints the address of its page. examples/pages.py serves the pages.
"""
