const ws = new WebSocket('ws://localhost:3000/ws?events=modem_status_update');

ws.onopen = function(event) {
    console.log('Connected to SMS Gateway WebSocket');
};

ws.onmessage = function(event) {
    const data = JSON.parse(event.data);
    console.log('Received event:', data);
};

ws.onclose = function(event) {
    console.log('WebSocket connection closed');
    // Implement reconnection logic here
};

ws.onerror = function(error) {
    console.error('WebSocket error:', error);
};
