"""An OTLP trace receiver for the trace tests (tests/it/traces.rs), decoding what it receives
with the official OTLP protobuf definitions (the `opentelemetry-proto` package), as a
collector's receiver does: over gRPC (`TraceService/Export`, grpcio) and over HTTP
(`POST /v1/traces`, `application/x-protobuf`).

Prints one JSON line with its two ports, then one JSON line per span received:
{"trace_id", "span_id", "parent_span_id", "name", "kind", "attributes", "links",
 "start_ns", "end_ns", "status", "resource", "transport"}.
Runs until stdin closes (the test process holds it), so it never outlives the test.

With --discard (bench/observability.sh), it reads each export and answers it without decoding
or printing anything: a collector that keeps up, so that the benchmark measures hotserve's side.
"""
import json
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

LOCK = threading.Lock()


def value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def emit(request, transport):
    with LOCK:
        for resource_spans in request.resource_spans:
            resource = attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    print(json.dumps({
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "kind": span.kind,
                        "attributes": attributes(span.attributes),
                        "links": [
                            {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex()}
                            for link in span.links
                        ],
                        "start_ns": span.start_time_unix_nano,
                        "end_ns": span.end_time_unix_nano,
                        "status": span.status.code,
                        "resource": resource,
                        "transport": transport,
                    }), flush=True)


DISCARD = "--discard" in sys.argv


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        if not DISCARD:
            emit(request, "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


class HttpHandler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        if not DISCARD:
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            emit(request, "http")
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    http = ThreadingHTTPServer(("127.0.0.1", 0), HttpHandler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    print(json.dumps({"grpc": grpc_port, "http": http.server_address[1]}), flush=True)
    sys.stdin.read()
    server.stop(0)
    http.shutdown()


if __name__ == "__main__":
    main()
