"""
The classic JSON socket server of the introduction, as the article wrote it
(only the address now comes from the command line):

    python examples/classic_server.py [HOST] [PORT]     # default localhost 8080

One C{recv(1024)}, C{json.loads}, a reply C{json.dumps}-ed with no newline,
close.  jsonservice's client still talks to it: L{JSONProtocol.send} gets
the unterminated reply when the server closes the connection.
"""

import json
import socket
import sys

HOST = sys.argv[1] if len(sys.argv) > 1 else "localhost"
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 8080

# Create the server socket
server_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

# Set the server address and port
server_address = (HOST, PORT)
server_socket.bind(server_address)
server_socket.listen(1)

while True:
    print("Waiting for a client connection...")
    client_socket, client_address = server_socket.accept()
    print("Client connected:", client_address)

    # Receive data
    received_data = client_socket.recv(1024).decode()
    print("Received:", received_data)

    # Turn the received data into a JSON object
    json_received_data = json.loads(received_data)
    print("JSON:", json_received_data)

    # Build the JSON response
    response_data = {"message": "Hello from server"}

    # Turn the JSON object into a string
    json_response_data = json.dumps(response_data)

    # Send it
    client_socket.send(json_response_data.encode())
    print("Sent:", json_response_data)

    # Close the client socket
    client_socket.close()
