"""A CRI client on gRPC C-core (Python grpcio), for interoperability tests of the gateway.

Usage: cri-py-client.py SOCKET DESCRIPTOR_SET < calls.json
calls.json is a list of {"service": "RuntimeService", "method": "Version", "request": {...}};
a string "$N.path.to.field" in a request is replaced by that field of call N's response.
Prints a JSON list of {"code": 0, "details": "", "response": {...}} (proto field names).
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory


def message_class(desc):
    get = getattr(message_factory, "GetMessageClass", None)
    return get(desc) if get else message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


def resolve(value, results):
    if isinstance(value, str) and value.startswith("$"):
        index, _, path = value[1:].partition(".")
        out = results[int(index)]["response"]
        for key in path.split("."):
            if key not in out:
                sys.exit("call %s answered no %s: %s" % (index, path, json.dumps(results[int(index)])))
            out = out[key]
        return out
    if isinstance(value, dict):
        return {k: resolve(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, results) for v in value]
    return value


def main():
    socket, descriptor_set = sys.argv[1], sys.argv[2]
    fds = descriptor_pb2.FileDescriptorSet()
    with open(descriptor_set, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file in fds.file:
        pool.Add(file)
    channel = grpc.insecure_channel("unix:" + socket)
    results = []
    for call in json.load(sys.stdin):
        service = pool.FindServiceByName("runtime.v1." + call["service"])
        method = service.FindMethodByName(call["method"])
        req_cls = message_class(method.input_type)
        res_cls = message_class(method.output_type)
        stub = channel.unary_unary(
            "/runtime.v1.%s/%s" % (call["service"], call["method"]),
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=res_cls.FromString,
        )
        request = json_format.ParseDict(resolve(call.get("request", {}), results), req_cls())
        try:
            reply = stub(request, timeout=30)
            results.append(
                {
                    "code": 0,
                    "details": "",
                    "response": json_format.MessageToDict(reply, preserving_proto_field_name=True),
                }
            )
        except grpc.RpcError as err:
            results.append({"code": err.code().value[0], "details": err.details(), "response": {}})
    json.dump(results, sys.stdout)


main()
