"""The Open Inference Protocol's ModelInfer messages, built at run time from a descriptor written here.

Only the fields modelotel reads, with the field numbers of the protocol's ``grpc_predict_v2.proto`` (KServe's
"Open Inference Protocol" specification): enough for a real grpc.aio server and client on loopback without
generated stubs (the main venv has no grpcio-tools; the real servers' tests use the servers' own stubs).
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _message(fd: descriptor_pb2.FileDescriptorProto, name: str, fields: list[tuple]) -> None:
    msg = fd.message_type.add(name=name)
    for fname, number, ftype, repeated, *type_name in fields:
        field = msg.field.add(
            name=fname,
            number=number,
            type=ftype,
            label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
        )
        if type_name:
            field.type_name = type_name[0]


def _build() -> dict[str, type]:
    fd = descriptor_pb2.FileDescriptorProto(name="modelotel_test_oip.proto", package="inference", syntax="proto3")
    _message(
        fd,
        "InferTensorContents",
        [
            ("bool_contents", 1, _F.TYPE_BOOL, True),
            ("int_contents", 2, _F.TYPE_INT32, True),
            ("int64_contents", 3, _F.TYPE_INT64, True),
            ("uint_contents", 4, _F.TYPE_UINT32, True),
            ("uint64_contents", 5, _F.TYPE_UINT64, True),
            ("fp32_contents", 6, _F.TYPE_FLOAT, True),
            ("fp64_contents", 7, _F.TYPE_DOUBLE, True),
            ("bytes_contents", 8, _F.TYPE_BYTES, True),
        ],
    )
    _message(
        fd,
        "InferOutputTensor",
        [
            ("name", 1, _F.TYPE_STRING, False),
            ("datatype", 2, _F.TYPE_STRING, False),
            ("shape", 3, _F.TYPE_INT64, True),
            ("contents", 5, _F.TYPE_MESSAGE, False, ".inference.InferTensorContents"),
        ],
    )
    _message(
        fd,
        "InferInputTensor",
        [
            ("name", 1, _F.TYPE_STRING, False),
            ("datatype", 2, _F.TYPE_STRING, False),
            ("shape", 3, _F.TYPE_INT64, True),
            ("contents", 5, _F.TYPE_MESSAGE, False, ".inference.InferTensorContents"),
        ],
    )
    _message(
        fd,
        "ModelInferRequest",
        [
            ("model_name", 1, _F.TYPE_STRING, False),
            ("model_version", 2, _F.TYPE_STRING, False),
            ("id", 3, _F.TYPE_STRING, False),
            ("inputs", 5, _F.TYPE_MESSAGE, True, ".inference.InferInputTensor"),
        ],
    )
    _message(
        fd,
        "ModelInferResponse",
        [
            ("model_name", 1, _F.TYPE_STRING, False),
            ("model_version", 2, _F.TYPE_STRING, False),
            ("id", 3, _F.TYPE_STRING, False),
            ("outputs", 5, _F.TYPE_MESSAGE, True, ".inference.InferOutputTensor"),
            ("raw_output_contents", 6, _F.TYPE_BYTES, True),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    file = pool.Add(fd)
    del file
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{name}"))
        for name in (
            "InferTensorContents",
            "InferInputTensor",
            "InferOutputTensor",
            "ModelInferRequest",
            "ModelInferResponse",
        )
    }


_CLASSES = _build()
InferTensorContents = _CLASSES["InferTensorContents"]
InferInputTensor = _CLASSES["InferInputTensor"]
InferOutputTensor = _CLASSES["InferOutputTensor"]
ModelInferRequest = _CLASSES["ModelInferRequest"]
ModelInferResponse = _CLASSES["ModelInferResponse"]
