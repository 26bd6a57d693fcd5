import asyncio
import websockets
import json

async def listen_for_events():
    uri = "ws://localhost:3000/ws?events=incoming,outgoing"
    
    async with websockets.connect(uri) as websocket:
        async for message in websocket:
            event = json.loads(message)
            print(f"Received {event['event_type']}: {event['data']}")

# Run the client
asyncio.run(listen_for_events())
