"""
The classic JSON socket client of the introduction, as the article wrote it
(only the address now comes from the command line):

    python examples/classic_client.py [HOST] [PORT]     # default localhost 8080

It sends one C{json.dumps}-ed object with no newline and reads one
C{recv(1024)}.  It works unchanged against C{twistd -n jsonservice}: the
server answers a complete unterminated JSON text from a waiting peer.
"""

import json
import socket
import sys

HOST = sys.argv[1] if len(sys.argv) > 1 else "localhost"
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 8080

# Create the client socket
client_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

# Set the server address and port
server_address = (HOST, PORT)
client_socket.connect(server_address)

# Build a JSON object
data = {"name": "John", "age": 30, "city": "New York"}

# Turn the JSON object into a string
json_data = json.dumps(data)

# Send it
client_socket.send(json_data.encode())
print("Sent:", json_data)

# Receive data
received_data = client_socket.recv(1024).decode()
print("Received:", received_data)

# Turn the received data into a JSON object
json_received_data = json.loads(received_data)
print("JSON:", json_received_data)

# Close the client socket
client_socket.close()
