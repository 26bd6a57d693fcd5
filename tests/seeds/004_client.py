import asyncio
import websockets
import json

async def websocket_client():
    uri = "ws://localhost:8000/ws/products"
    
    async with websockets.connect(uri) as websocket:
        # Subscribe to products
        subscribe = {
            "action": "subscribe",
            "resource": "products"
        }
        await websocket.send(json.dumps(subscribe))
        
        # Listen for messages
        while True:
            message = await websocket.recv()
            data = json.loads(message)
            print(f"Event: {data['event']}, Data: {data['data']}")

asyncio.run(websocket_client())
