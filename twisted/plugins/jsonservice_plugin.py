"""The twistd plugin: C{twistd -n jsonservice --port 8080}."""

from twisted.application.service import ServiceMaker

jsonservice = ServiceMaker(
    "jsonservice",
    "jsonservice.tap",
    "Newline-delimited JSON and JSON-RPC 2.0 server",
    "jsonservice",
)
