const socket = new WebSocket('ws://localhost:2559?apikey=your_api_key_here');

socket.onopen = function(event) {
  console.log('Connected to WebSocket');
};

socket.onmessage = function(event) {
  const data = JSON.parse(event.data);
  
  switch(data.event) {
    case 'message':
      console.log('New message:', data.data.content);
      break;
    case 'connection':
      console.log('Connection state:', data.data.state);
      break;
    case 'status':
      console.log('Status update:', data.data.status);
      break;
    case 'group':
      console.log('Group action:', data.data.action);
      break;
    case 'presence':
      console.log('Presence update:', data.data.presence);
      break;
    case 'call':
      console.log('Call status:', data.data.status);
      break;
  }
};

socket.onerror = function(error) {
  console.error('WebSocket error:', error);
};

socket.onclose = function(event) {
  console.log('WebSocket connection closed:', event.code, event.reason);
};
