"""An OTLP/HTTP trace receiver for the tests, built on the OpenTelemetry
project's own protobuf types (`opentelemetry-proto`): it decodes each
`ExportTraceServiceRequest` the daemon posts to /v1/traces and appends
every span to a JSON-lines file, with ids in hex.

Usage: python otlp_receiver.py SPANS_FILE [--stall | --count]
Prints "listening PORT" once it accepts. With --stall it reads each
request and never answers (a collector that hangs). With --count it
decodes each request but writes only the running count of spans to
SPANS_FILE (for benchmarks, where writing every span would take the CPU
the measured kernels need).
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

SPANS_FILE = sys.argv[1]
STALL = "--stall" in sys.argv[2:]
COUNT = "--count" in sys.argv[2:]
LOCK = threading.Lock()
received = 0


def value_of(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if STALL:
            time.sleep(3600)
            return
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        if COUNT:
            global received
            spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            with LOCK:
                received += spans
                with open(SPANS_FILE, "w", encoding="utf-8") as out:
                    out.write(f"{received}\n")
            self.answer()
            return
        lines = []
        for resource_spans in request.resource_spans:
            resource = {
                kv.key: value_of(kv.value) for kv in resource_spans.resource.attributes
            }
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    lines.append(
                        json.dumps(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                                "kind": span.kind,
                                "start": span.start_time_unix_nano,
                                "end": span.end_time_unix_nano,
                                "status_code": span.status.code,
                                "status_message": span.status.message,
                                "attributes": {
                                    kv.key: value_of(kv.value) for kv in span.attributes
                                },
                                "resource": resource,
                                "content_type": self.headers.get("Content-Type"),
                                "x_team": self.headers.get("x-team"),
                            }
                        )
                    )
        with LOCK, open(SPANS_FILE, "a", encoding="utf-8") as out:
            for line in lines:
                out.write(line + "\n")
        self.answer()

    def answer(self):
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
server.daemon_threads = True
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
