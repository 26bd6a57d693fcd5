import websocket
import json
import _thread
import time

def on_message(ws, message):
    data = json.loads(message)
    event_type = data['event']
    instance = data['instance']
    event_data = data['data']
    
    print(f"Received {event_type} event from {instance}")
    
    if event_type == 'message':
        print(f"Message content: {event_data.get('content')}")

def on_error(ws, error):
    print(f"Error: {error}")

def on_close(ws, close_status_code, close_msg):
    print(f"Connection closed: {close_status_code} - {close_msg}")

def on_open(ws):
    print("Connection opened")

if __name__ == "__main__":
    websocket.enableTrace(True)
    ws = websocket.WebSocketApp("ws://localhost:2559?apikey=your_api_key_here",
                              on_open=on_open,
                              on_message=on_message,
                              on_error=on_error,
                              on_close=on_close)

    ws.run_forever()
