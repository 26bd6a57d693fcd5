import asyncio
import websockets

async def connect():
    uri = "ws://localhost:8000/ws/products"
    async with websockets.connect(uri) as websocket:
        # Send subscription message
        await websocket.send('{"action": "subscribe", "resource": "products"}')
        
        # Receive messages
        message = await websocket.recv()
        print(f"Received: {message}")

asyncio.run(connect())
