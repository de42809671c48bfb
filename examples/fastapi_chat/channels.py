"""The tutorial's chat (main.py) with its broadcast on fastws channels, so that every
client hears every message whichever worker it is connected to:
``fastws serve examples.fastapi_chat.channels:app --workers 2``.

Two lines differ from the tutorial: the connection subscribes to the room with
``connection(websocket).subscribe("chat")``, and ``fastws.publish("chat", text)`` replaces
the loop over a list of connections (which only knows its own worker's).
"""

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

import fastws
from fastws.asgi import connection

from .main import html

app = FastAPI()


@app.get("/")
async def get():
    return HTMLResponse(html)


@app.websocket("/ws/{client_id}")
async def websocket_endpoint(websocket: WebSocket, client_id: int):
    await websocket.accept()
    connection(websocket).subscribe("chat")
    try:
        while True:
            data = await websocket.receive_text()
            await websocket.send_text(f"You wrote: {data}")
            await fastws.publish("chat", f"Client #{client_id} says: {data}")
    except WebSocketDisconnect:
        await fastws.publish("chat", f"Client #{client_id} left the chat")
